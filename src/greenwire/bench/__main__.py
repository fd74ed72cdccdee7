"""``python -m greenwire.bench EXPERIMENT [options]``: run one experiment."""

from __future__ import annotations

import sys

EXPERIMENTS = {"xmlrpc": "the article's XML-RPC servers under load (docs/xmlrpc-experiment.md)"}


def main(argv: list[str]) -> int:
    """Dispatch to the experiment named first on the command line."""
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in EXPERIMENTS:
        listing = "\n".join(f"  {name:<8} {what}" for name, what in EXPERIMENTS.items())
        print(f"usage: python -m greenwire.bench EXPERIMENT [options]\n\nexperiments:\n{listing}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown experiment {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    from greenwire.bench import xmlrpc_experiment

    return xmlrpc_experiment.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
