"""VRRP backend: ietf-vrrp served by keepalived over virtual-MAC macvlans."""
