"""factpatch keys: create, list and revoke API keys in the edit log's database (no torch, no HTTP).

    OPS=$(factpatch keys create --name ops --role operator)   # the secret, printed once on stdout
    factpatch keys list
    factpatch keys revoke ops

Works on the database `FACTPATCH_DATABASE_URL` (or the SQLite log in `FACTPATCH_DATA_DIR`)
names, so every API process of the deployment sees the key within `key_cache_seconds`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store.log import ApiKeyRecord, EditLog

HELP = "manage API keys (stored hashed in the edit log's database): create, list, revoke"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="make a key and print its secret once")
    create.add_argument("--name", required=True, help="recorded as the actor of everything the key does")
    create.add_argument("--role", required=True, choices=("reader", "editor", "operator"),
                        help="reader: queries and the log; editor: + edits; operator: + rollback, replay")
    create.add_argument("--json", action="store_true", help="print the key (secret included) as JSON")
    listing = sub.add_parser("list", help="every key, revoked ones included (never the secrets)")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    revoke = sub.add_parser("revoke", help="stop a key working (its name stays taken)")
    revoke.add_argument("name", help="the key's name or id")
    revoke.add_argument("--json", action="store_true", help="print the revoked key as JSON")


def run(args: argparse.Namespace) -> int:
    from contract.config import Settings
    from contract.errors import EditingError
    from store.log import open_log

    log = open_log(Settings())
    try:
        return int(ACTIONS[args.keys_command](log, args))
    except EditingError as exc:
        sys.stderr.write(f"factpatch keys {args.keys_command}: {exc.detail}\n")
        return 1
    finally:
        log.close()


def _create(log: EditLog, args: argparse.Namespace) -> int:
    from store.log import new_secret

    secret = new_secret()
    record = log.create_key(name=args.name, role=args.role, secret=secret)
    if args.json:
        _print_json({**_public(record), "secret": secret})
        return 0
    sys.stderr.write(f"created key {record.name!r} ({record.role}, {record.id}); the secret below is shown "
                     "once and stored only as a sha256 digest:\n")
    sys.stdout.write(secret + "\n")
    return 0


def _list(log: EditLog, args: argparse.Namespace) -> int:
    from cli.operator.render import table

    keys = log.list_keys()
    if args.json:
        _print_json([_public(k) for k in keys])
        return 0
    rows = [[k.name, k.role, k.hint + "…", k.created_at, k.revoked_at or "active", k.id] for k in keys]
    sys.stdout.write(table(["NAME", "ROLE", "KEY", "CREATED", "REVOKED", "ID"], rows) + "\n")
    return 0


def _revoke(log: EditLog, args: argparse.Namespace) -> int:
    record = log.revoke_key(args.name)
    if args.json:
        _print_json(_public(record))
    else:
        sys.stdout.write(f"revoked key {record.name!r} ({record.role}) at {record.revoked_at}\n")
    return 0


def _public(record: ApiKeyRecord) -> dict[str, object]:
    return record.model_dump(exclude={"digest"})


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


ACTIONS = {"create": _create, "list": _list, "revoke": _revoke}
