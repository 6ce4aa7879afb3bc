"""Linux backend: ietf-interfaces / ietf-ip / macvlan configuration and state through netlink."""
