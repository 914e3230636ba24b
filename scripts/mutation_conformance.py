#!/usr/bin/env python3
"""Mutation check of the OIDC conformance tests: remove each check from the guard, run its case, restore.

Each entry below takes one check out of the source (an exact text replaced by a weaker one), runs the
conformance test that should catch it, and puts the file back as it was, whatever happens. The check is
"caught" when that test fails. Prints a Markdown table (docs/oidc-conformance.md holds the last one) and
exits 1 if any mutation survived.

    .venv/bin/python scripts/mutation_conformance.py
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = "tests/conformance/test_rp_cases.py"
ID_TOKEN = "asgi_oauth_guard/_id_token.py"
CLIENT = "asgi_oauth_guard/providers/_client.py"
METADATA = "asgi_oauth_guard/providers/_metadata.py"
BACKCHANNEL = "asgi_oauth_guard/_backchannel.py"
BACKCHANNEL_TESTS = "tests/conformance/test_backchannel_cases.py"


@dataclasses.dataclass(frozen=True)
class Mutation:
    check: str
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    also: tuple[tuple[str, str], ...] = ()  # more (original, mutated) edits in the same file
    also_in: tuple[tuple[str, str, str], ...] = ()  # (path, original, mutated) edits in other files


_NO_SIGNATURE_CHECK = 'raise IDTokenError("no published key verifies the ID token\'s signature")'
_UNVERIFIED = 'return {}, json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))'


def sign_in(*cases: str) -> tuple[str, ...]:
    return tuple(f"{TESTS}::test_sign_in[{case}]" for case in cases)


def own(*names: str) -> tuple[str, ...]:
    return tuple(f"{TESTS}::{name}" for name in names)


def logout(*cases: str) -> tuple[str, ...]:
    return tuple(f"{BACKCHANNEL_TESTS}::test_backchannel_logout[{case}]" for case in cases)


MUTATIONS = [
    Mutation(
        "iss must be the issuer",
        ID_TOKEN,
        'if claims.get("iss") != issuer:',
        "if False:",
        sign_in("rp-id_token-issuer-mismatch"),
    ),
    Mutation(
        "aud must contain the client",
        ID_TOKEN,
        "if client_id not in audiences:",
        "if False:",
        sign_in("rp-id_token-aud"),
    ),
    Mutation(
        "azp, when present, must be the client",
        ID_TOKEN,
        'if "azp" in claims and claims["azp"] != client_id:',
        "if False:",
        sign_in("x-id_token-azp-mismatch"),
    ),
    Mutation(
        "sub must be present",
        ID_TOKEN,
        "if not isinstance(sub, str) or not sub:",
        "if False:",
        sign_in("rp-id_token-sub"),
    ),
    Mutation(
        "exp must be in the future",
        ID_TOKEN,
        'if not _number(claims.get("exp")) or claims["exp"] + leeway <= now:',
        "if False:",
        sign_in("x-id_token-expired"),
    ),
    Mutation(
        "iat must be present",
        ID_TOKEN,
        'if not _number(claims.get("iat")) or claims["iat"] - leeway > now:',
        "if False:",
        sign_in("rp-id_token-iat"),
    ),
    Mutation(
        "nonce must equal the one sent",
        ID_TOKEN,
        'if nonce is not None and not _same_string(claims.get("nonce"), nonce):',
        "if False:",
        sign_in("rp-nonce-invalid"),
    ),
    Mutation(
        "nonce must be a string (a list holding it is refused)",
        ID_TOKEN,
        'if nonce is not None and not _same_string(claims.get("nonce"), nonce):',
        'if nonce is not None and claims.get("nonce") not in (nonce, [nonce]):',
        sign_in("x-id_token-nonce-list"),
    ),
    Mutation(
        "at_hash must match the access token",
        ID_TOKEN,
        "if hashed is not None and access_token and not _same_string(hashed, at_hash(access_token, alg)):",
        "if False:",
        sign_in("rp-id_token-bad-at_hash"),
    ),
    Mutation(
        "typ at+jwt is refused",
        ID_TOKEN,
        "if isinstance(typ, str) and typ.lower() in CONFUSED_TYPES:",
        "if False:",
        sign_in("x-id_token-typ-at+jwt"),
    ),
    Mutation(
        "alg must be one this client accepts (HS* only when registered)",
        ID_TOKEN,
        'if alg not in algorithms or alg == "none":',
        "if False:",
        own("test_hs256_id_tokens_are_refused_unless_the_client_registered_for_them"),
    ),
    Mutation(
        # "none" is refused twice over: by the alg check, and because no published key is of its type.
        "alg none is refused (both the alg check and the signature check removed)",
        ID_TOKEN,
        'if alg not in algorithms or alg == "none":',
        "if False:",
        sign_in("rp-id_token-sig-none"),
        also=((_NO_SIGNATURE_CHECK, _UNVERIFIED),),
    ),
    Mutation(
        "the signature must verify",
        ID_TOKEN,
        _NO_SIGNATURE_CHECK,
        _UNVERIFIED,
        sign_in("rp-id_token-bad-sig-rs256", "rp-id_token-bad-sig-es256", "rp-id_token-bad-sig-hs256"),
    ),
    Mutation(
        "without a kid, every key of the type is tried",
        ID_TOKEN,
        "for key in keys:\n        try:\n            with warnings",
        "for key in keys[:1]:\n        try:\n            with warnings",
        sign_in("rp-id_token-kid-absent-multiple-jwks"),
    ),
    Mutation(
        "userinfo sub must be the ID token's sub",
        CLIENT,
        'if expected_sub is not None and data["sub"] != expected_sub:',
        "if False:",
        sign_in("rp-userinfo-bad-sub-claim"),
    ),
    Mutation(
        "discovery must name the configured issuer",
        METADATA,
        "if named != issuer:",
        "if False:",
        own("test_rp_discovery_issuer_not_matching_config"),
    ),
    Mutation(
        "an unknown kid refetches the JWKS",
        CLIENT,
        "refreshed = await self._refetch_keys(provider, keys)",
        "refreshed = None",
        own("test_rp_key_rotation_op_sign_key"),
    ),
    Mutation(
        "JWKS refetches at most once per interval",
        CLIENT,
        "if self._jwks_refetched_at is not None and now - self._jwks_refetched_at < JWKS_REFETCH_INTERVAL:",
        "if False:",
        own("test_a_flood_of_unknown_kids_refetches_the_jwks_once_per_interval"),
    ),
    Mutation(
        "racing callbacks share one refetch",
        CLIENT,
        "if self._jwks is not seen:",
        "if False:",
        own("test_sign_ins_racing_after_a_rotation_share_one_refetch"),
    ),
    Mutation(
        "a refreshed ID token has the login's iss, sub and aud (OIDC Core 12.2)",
        CLIENT,
        "if claims.get(name) != before.get(name):",
        "if False:",
        own("test_a_refreshed_id_token_about_someone_else_is_not_used[another-sub]"),
    ),
    Mutation(
        "a refresh without an ID token keeps the login's",
        CLIENT,
        "return dataclasses.replace(fresh, id_token=tokens.id_token)\n        try:",
        "return fresh\n        try:",
        own("test_a_refresh_without_an_id_token_keeps_the_logins_for_logout"),
    ),
    # back-channel logout tokens
    Mutation(
        "logout token: alg must be one this client accepts (HS* only when registered)",
        CLIENT,
        "if alg not in _id_token.allowed_algorithms(provider.id_token_algorithms, self._id_token_alg):",
        "if False:",
        logout("rp-backchannel-rpinitlogout-lt-wrong-alg"),
    ),
    Mutation(
        "logout token: alg none is refused (the alg check and the signature check removed)",
        CLIENT,
        "if alg not in _id_token.allowed_algorithms(provider.id_token_algorithms, self._id_token_alg):",
        "if False:",
        logout("rp-backchannel-rpinitlogout-lt-alg-none"),
        also_in=((ID_TOKEN, _NO_SIGNATURE_CHECK, _UNVERIFIED),),
    ),
    Mutation(
        "logout token: aud must contain the client",
        BACKCHANNEL,
        "if client_id not in audiences:",
        "if False:",
        logout("rp-backchannel-rpinitlogout-lt-wrong-aud"),
    ),
    Mutation(
        "logout token: iss must be the issuer",
        BACKCHANNEL,
        'if claims.get("iss") != issuer:',
        "if False:",
        logout("rp-backchannel-rpinitlogout-lt-wrong-issuer"),
    ),
    Mutation(
        "logout token: events must hold the back-channel logout event",
        BACKCHANNEL,
        "if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):",
        "if False:",
        logout("rp-backchannel-rpinitlogout-lt-no-event", "rp-backchannel-rpinitlogout-lt-wrong-event"),
    ),
    Mutation(
        "logout token: no nonce",
        BACKCHANNEL,
        'if "nonce" in claims:',
        "if False:",
        logout("rp-backchannel-rpinitlogout-lt-with-nonce"),
    ),
    Mutation(
        "logout token: sid or sub",
        BACKCHANNEL,
        "if sub is None and sid is None:",
        "if False:",
        logout("x-backchannel-no-sid-no-sub"),
    ),
    Mutation(
        "logout token: sid names the provider session to end (not the whole user)",
        BACKCHANNEL,
        "if request.sid is not None:",
        "if False:",
        logout("x-backchannel-wrong-sid"),
    ),
    Mutation(
        "logout token: a jti is accepted once",
        BACKCHANNEL,
        'if not await self._store.add(jti_key, b"1", ttl=ttl):',
        'if not await self._store.add(jti_key, b"1", ttl=ttl) and False:',
        (f"{BACKCHANNEL_TESTS}::test_x_backchannel_jti_replay",),
    ),
]


def run(mutation: Mutation) -> tuple[bool, str]:
    """Whether the tests failed with the mutation in place (caught), and what ran."""
    edits: dict[str, list[tuple[str, str]]] = {
        mutation.path: [(mutation.original, mutation.mutated), *mutation.also]
    }
    for path, original, replacement in mutation.also_in:
        edits.setdefault(path, []).append((original, replacement))
    sources = {path: (REPO / path).read_text() for path in edits}
    mutated = {}
    for path, pairs in edits.items():
        text = sources[path]
        for original, replacement in pairs:
            if text.count(original) != 1:
                raise SystemExit(f"{path}: the text of {mutation.check!r} is not there exactly once")
            text = text.replace(original, replacement)
        mutated[path] = text
    try:
        for path, text in mutated.items():
            (REPO / path).write_text(text)
        result = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:randomly",
                "-p",
                "no:cacheprovider",
                *mutation.tests,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        for path, text in sources.items():
            (REPO / path).write_text(text)
    return result.returncode != 0, result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def main() -> int:
    baseline = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            TESTS,
            BACKCHANNEL_TESTS,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if baseline.returncode != 0:
        print(baseline.stdout[-3000:])
        raise SystemExit("the conformance tests fail without any mutation: fix them first")
    print("| check removed | test that failed | caught |")
    print("|---|---|---|")
    survived = 0
    for mutation in MUTATIONS:
        caught, summary = run(mutation)
        survived += not caught
        names = ", ".join(f"`{t.split('::', 1)[1]}`" for t in mutation.tests)
        print(f"| {mutation.check} (`{mutation.path}`) | {names} | {'yes' if caught else 'NO: ' + summary} |")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
