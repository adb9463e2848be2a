"""A block kind from outside search.blocks: ``pw_s<stride>_c<width>_<act>``."""
