"""``python -m greenwire.monkey [options] script.py [args]``: run a program patched."""

from greenwire.monkey._cli import main

raise SystemExit(main())
