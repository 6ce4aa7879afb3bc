"""netconf-vrrp-agent: a NETCONF/YANG management agent for Linux routers."""

__version__ = "0.1.0"
