"""``python -m agent`` — same as the ``netconf-vrrp-agent`` command."""

from agent.cli import main

raise SystemExit(main())
