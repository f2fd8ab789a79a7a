"""Feature flags on the AppConfig port (README "Feature flags"): ``?flag=`` subsets, the agent's
answer to an unknown flag, multi-variant flags (AWS's Ion retrieval format) chosen from
``Context`` headers by AWS's documented rules (the Ion reader alone: test_ion.py)."""

from __future__ import annotations

import json

from sidecar.core import flags
from tests.support.appconfig_served import FLAGS_ION, AppConfigAws, Served, StartServed

BASIC = {"ui": {"enabled": True, "color": "blue"}, "beta": {"enabled": False},
         "limits": {"enabled": True, "max": 5}}
# AWS's own example (README "Feature flags"; AWS, "Retrieving basic and multi-variant feature
# flags"), in the retrieval-time Ion format, and a basic flag beside it.
VARIANTS = b"""
'ui_refresh'::[
  [(ends_with $email "qa-testers.example.org"),
   '''{"_variant": "QA", "dark_mode_support": true, "enabled": true}'''],
  [(exists key::"opted_in_to_beta"),
   '''{"_variant": "Beta Testers", "dark_mode_support": true, "enabled": true}'''],
  [(split pct::10 by::$email),
   '''{"_variant": "Sample Population", "dark_mode_support": false, "enabled": true}'''],
  '''{"_variant": "Default Variant", "enabled": false}'''
]
'pricing'::[
  [(and (gte $age 18) (lt $age 65) (not (in $country ["FR", "DE"]))), '''{"_variant": "adult"}'''],
  [(matches in::$plan pattern::"^pro"), '''{"_variant": "pro"}'''],
  [(gt $since 2024-01-01T00:00:00Z), '''{"_variant": "recent"}'''],
  '''{"_variant": "standard"}'''
]
// seeded splits agree across flags; unseeded ones in one flag overlap (AWS's examples)
'seeded_a'::[[(split pct::30 by::$id seed::"s"), '''{"_variant": "in"}'''],
             '''{"_variant": "out"}''']
'seeded_b'::[[(split pct::30 by::$id seed::"s"), '''{"_variant": "in"}'''],
             '''{"_variant": "out"}''']
'overlap'::[[(split pct::20 by::$id), '''{"_variant": "A"}'''],
            [(split pct::20 by::$id), '''{"_variant": "B"}'''], '''{"_variant": "C"}''']
'button_color'::'''{"enabled": true, "color": "orange"}'''
"""


def _flags(served: Served, profile: str, query: str = "", context: list[str] | None = None
           ) -> dict[str, object]:
    response = served.repeated("app", "prod", profile, query,
                               [("Context", value) for value in context or []])
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    document: dict[str, object] = response.json()
    return document


def test_flag_subsets_and_unknown_flags(start_served: StartServed, appconfig_aws: AppConfigAws,
                                        unique: str) -> None:
    raw = json.dumps(BASIC, indent=2).encode()
    appconfig_aws.fake.deploy("app", "prod", unique, raw)
    appconfig_aws.fake.deploy("app", "prod", f"{unique}-text", b"plain text", "text/plain")
    served = start_served()
    assert served.get("app", "prod", unique).content == raw  # the whole profile: as deployed
    assert _flags(served, unique, "?flag=ui") == {"enabled": True, "color": "blue"}
    assert _flags(served, unique, "?flag=ui&flag=limits") == {
        "ui": BASIC["ui"], "limits": BASIC["limits"]}
    assert served.get("app", "prod", unique, "?flag=ui&flag=limits").content == \
        b'{"limits":{"enabled":true,"max":5},"ui":{"color":"blue","enabled":true}}'
    unknown = served.get("app", "prod", unique, "?flag=ui&flag=nope&flag=gone")
    assert unknown.status_code == 400
    assert unknown.json() == {
        "Message": "Configuration data missing one or more flag values",
        "Reason": "InvalidParameters",
        "Details": {"InvalidParameters": {"nope": {"Problem": "NoSuchFlag"},
                                          "gone": {"Problem": "NoSuchFlag"}}}}
    not_flags = served.get("app", "prod", f"{unique}-text", "?flag=ui")
    assert not_flags.status_code == 400
    assert not_flags.json()["Details"]["InvalidParameters"]["flag"]["Problem"] == \
        "NotFeatureFlags"
    assert served.get("app", "prod", unique, "?flag=").status_code == 400


def test_multi_variant_flags_follow_the_context(start_served: StartServed,
                                                appconfig_aws: AppConfigAws,
                                                unique: str) -> None:
    appconfig_aws.fake.deploy("app", "prod", unique, VARIANTS, FLAGS_ION)
    served = start_served()
    whole = _flags(served, unique)
    assert whole["ui_refresh"] == {"_variant": "Default Variant", "enabled": False}
    assert whole["button_color"] == {"enabled": True, "color": "orange"}
    assert whole["pricing"] == {"_variant": "standard"}
    qa = _flags(served, unique, "?flag=ui_refresh", ["email=jane@qa-testers.example.org"])
    assert qa["_variant"] == "QA"
    beta = _flags(served, unique, "?flag=ui_refresh",
                  ["email=jane_doe@example.org", "opted_in_to_beta=false"])  # repeated
    assert beta["_variant"] == "Beta Testers"
    both = _flags(served, unique, "?flag=ui_refresh&flag=pricing",
                  ["age=30, country=US", "plan=basic"])  # comma-separated entries too
    assert both == {"ui_refresh": {"_variant": "Default Variant", "enabled": False},
                    "pricing": {"_variant": "adult"}}
    for context, variant in ((["age=30", "country=FR"], "standard"),
                             (["age=seventy"], "standard"),  # not a number: false
                             (["plan=professional"], "pro"),
                             (["since=2024-06-01T00:00:00Z"], "recent"),
                             (["since=2023-06-01"], "standard")):
        assert _flags(served, unique, "?flag=pricing", context)["_variant"] == variant, context
    bad = served.get("app", "prod", unique, headers={"Context": "no-equals-sign"})
    assert bad.status_code == 400


def test_split_is_consistent_and_proportional(start_served: StartServed,
                                              appconfig_aws: AppConfigAws, unique: str) -> None:
    appconfig_aws.fake.deploy("app", "prod", unique, VARIANTS, FLAGS_ION)
    served = start_served()
    sampled = 0
    counts = {"A": 0, "B": 0, "C": 0}
    for index in range(300):
        chosen = _flags(served, unique, "?flag=ui_refresh&flag=seeded_a&flag=seeded_b"
                        "&flag=overlap", [f"email={index}@example.org", f"id=user-{index}"])
        sampled += chosen["ui_refresh"]["_variant"] == "Sample Population"  # type: ignore[index]
        assert chosen["seeded_a"] == chosen["seeded_b"]  # one seed: the same users everywhere
        counts[chosen["overlap"]["_variant"]] += 1  # type: ignore[index]
    assert 15 <= sampled <= 45  # 10 % of 300, give or take
    assert 35 <= counts["A"] <= 85 and counts["B"] == 0  # AWS: "A: 20%, B: 0%, C: 80%"
    expected = sum(flags.bucket("ui_refresh", f"{index}@example.org") < 10
                   for index in range(300))
    assert sampled == expected  # the flag's name seeds an unseeded split
