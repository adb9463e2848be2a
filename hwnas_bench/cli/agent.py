"""``hwnas agent deploy|ping``: put the agent on a board, or greet it."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..deploy import build_agent_zipapp
from ..errors import ConfigError, UsageError
from ..transports.ssh import SSHTransport
from .common import add_target_options, open_device, resolve_target
from .render import console, facts_table, say


def run_deploy(args: argparse.Namespace) -> int:
    spec = resolve_target(args)
    transport = spec.make_transport()
    if not isinstance(transport, SSHTransport):
        raise ConfigError(
            f"'{spec.name}' is a {spec.transport} target; deploy works over SSH. For a serial "
            "board copy the zipapp (hwnas agent build) and start it there with --serial PORT"
        )
    transport.connect(args.timeout or spec.timeout)
    try:
        path = transport.ensure_agent(force=args.force)
    finally:
        transport.close()
    verb = "uploaded" if transport.deployed else "already present"
    say(f"{spec.name}: agent {verb} at ~/{path}")
    return 0


def run_ping(args: argparse.Namespace) -> int:
    with open_device(args) as device:
        facts = device.open()
    if args.json:
        import json

        print(json.dumps(facts.to_dict(), indent=2))
    else:
        console().print(facts_table(device.name, facts))
    return 0


def run_build(args: argparse.Namespace) -> int:
    from ..plugins import agent_plugin_args, power_reader_plugins
    from .bench import write_output

    if args.output.is_dir():
        example = args.output / "agent.pyz"
        raise UsageError(f"{args.output} is a directory; give the file to write, e.g. {example}")
    bundle = build_agent_zipapp(tuple(r.module for r in power_reader_plugins()))
    write_output(args.output, bundle.data, "the agent")
    say(f"wrote {args.output} ({len(bundle.data)} bytes, sha256 {bundle.sha256[:12]}…)")
    flags = " ".join(agent_plugin_args())
    say(f"on the board: python3 {args.output.name} --serial /dev/ttyS0 {flags}".rstrip())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = sub.add_parser("agent", help="deploy or reach the device agent")
    verbs = agent.add_subparsers(dest="agent_verb", required=True, metavar="VERB")
    deploy = verbs.add_parser("deploy", help="upload the agent zipapp over SSH (checks the board)")
    add_target_options(deploy, positional=True)
    deploy.add_argument("--force", action="store_true", help="upload even if present")
    deploy.set_defaults(func=run_deploy)
    ping = verbs.add_parser("ping", help="print the board facts from hello")
    add_target_options(ping, positional=True)
    ping.add_argument("--json", action="store_true", help="print the facts as JSON")
    ping.set_defaults(func=run_ping)
    build = verbs.add_parser("build", help="write the agent zipapp to a file")
    build.add_argument("output", type=Path, metavar="OUT.pyz", help="file to write")
    build.set_defaults(func=run_build)
