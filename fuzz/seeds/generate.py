#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the repository's tests and sample data.

Run from anywhere: `python3 fuzz/seeds/generate.py`. Deterministic; the output is committed.
"""
import gzip
import hashlib
import json
import os
import re
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
# The resource types of fuzz_targets/common.rs, in order (the first byte of a search seed).
TYPES = ["Patient", "Observation", "Condition", "Encounter", "MedicationRequest",
         "AllergyIntolerance", "Procedure", "Immunization", "DiagnosticReport",
         "DocumentReference", "Practitioner", "Organization", "Group", "Provenance", "Binary"]


def write(target, data):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def search_seeds():
    """Every `(type, &[(name, value), ...])` search of the sandbox's search tests."""
    text = read("crates/epic-fhir-sandbox/src/search/tests.rs")
    pair = r'\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)'
    calls = re.finditer(r'"(\w+)"\s*,\s*&\[\s*((?:' + pair + r'\s*,?\s*)+)\]', text)
    count = 0
    for call in calls:
        resource_type = call.group(1)
        if resource_type not in TYPES:
            continue
        pairs = [(k.encode().decode("unicode_escape"), v.encode().decode("unicode_escape"))
                 for k, v in re.findall(pair, call.group(2))]
        query = urllib.parse.urlencode(pairs)
        write("search_params", bytes([TYPES.index(resource_type)]) + query.encode())
        count += 1
    # The sandbox API tests' query strings.
    api = read("crates/epic-fhir-sandbox/tests/fhir_api.rs")
    for match in re.finditer(r'"/?(' + "|".join(TYPES) + r')\?([^"]*)"', api):
        write("search_params", bytes([TYPES.index(match.group(1))]) + match.group(2).encode())
        count += 1
    return count


def assertion_seeds():
    """Assertions and claims like those the token endpoint tests build."""
    header = {"alg": "ES384", "typ": "JWT", "kid": "ec-1"}
    claims = {"iss": "fuzz-client", "sub": "fuzz-client",
              "aud": "http://127.0.0.1:1/interconnect-fhir-oauth/oauth2/token",
              "jti": "a1b2c3", "exp": 1700000300, "iat": 1700000000}
    def b64(data):
        import base64
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    raw = b".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(b"sig")])
    write("client_assertion", b"\x00" + raw)
    write("client_assertion", b"\x00" + b"not.a.jwt")
    write("client_assertion", b"\x00" + b"..")
    for alg in ["none", "HS256", "RS384", "ES384", "PS384", "RS256"]:
        h = dict(header, alg=alg)
        write("client_assertion", b"\x01" + json.dumps(h).encode() + b"\xff"
              + json.dumps(claims).encode() + b"\xff" + b"\x00" * 96)
    write("client_assertion", b"\x01" + json.dumps(dict(header, crit=["exp"])).encode() + b"\xff{}\xff")
    write("client_assertion", b"\x01" + json.dumps(dict(header, jku="http://127.0.0.1:9/jwks")).encode() + b"\xff{}\xff")
    write("client_assertion", b"\x02" + json.dumps(claims).encode())
    for changed in [{"exp": 1e30}, {"exp": -9223372036854775808}, {"iat": -9223372036854775808},
                    {"nbf": 9223372036854775807}, {"jti": "x" * 200}, {"jti": 7},
                    {"aud": ["a", "b"]}, {"iss": "someone"}, {"sub": None}, {"exp": "soon"},
                    {"exp": 1.5}, {}]:
        write("client_assertion", b"\x03" + json.dumps(changed).encode())
    return 26


def model_seeds():
    """Lines of the Synthea sample (three per type) and Bundles built of them."""
    folder = os.path.join(ROOT, "data", "synthea-r4")
    count = 0
    entries = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ndjson.gz"):
            continue
        with gzip.open(os.path.join(folder, name), "rb") as f:
            for i, line in enumerate(f):
                if i >= 3:
                    break
                line = line.strip()
                if len(line) > 16384:
                    continue
                write("model", line)
                entries.append(json.loads(line))
                count += 1
    for start in range(0, len(entries), 6):
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": 6,
                  "link": [{"relation": "next", "url": "Observation?sessionID=s-1"}],
                  "entry": [{"fullUrl": "urn:uuid:x", "resource": r, "search": {"mode": "match"}}
                            for r in entries[start:start + 6]]}
        write("model", json.dumps(bundle).encode())
        count += 1
    write("model", b'{"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"processing","details":{"coding":[{"system":"urn:oid:1.2.840.114350.1.13.0.1.7.2.657369","code":"4101"}]}}]}')
    write("model", b'{"resourceType":"Patient","id":"p1","_birthDate":{"extension":[{"url":"x","valueBoolean":true}]},"birthDate":"1987","extension":[{"url":"u","valueDecimal":1.50}]}')
    return count + 2


def ndjson_seeds():
    """NDJSON as the bulk tests write it, and the odd lines of the line-check tests."""
    patients = b"".join(
        json.dumps({"resourceType": "Patient", "id": f"p{i}",
                    "name": [{"family": f"Family{i}", "given": ["Ann", "Lee"]}]}).encode() + b"\n"
        for i in range(5))
    odd = [
        b'{"resourceType":"Patient","id":"a"}\n{"id":"b","name":[{"text":"x\\ny"}],"resourceType":"Patient"}\r\n{"resourceType":"Patient"}',
        b'{"resourceType":"Patient"}\n\n{"resourceType":"Patient"}\n',
        b'{"resourceType":"Patient"} {}\n[1,2]\n["Patient"]\n{"id":"x"}\n',
        b'{"resource\\u0054ype":"Patient","a":[1,2.5e-3,true,null,{"b":"\\ud83d\\ude00"}]}\n',
        b'{"resourceType":"Patient","resourceType":"Observation"}\n',
        b'{"a":{"b":{"c":[[[[[[[[[[1]]]]]]]]]]}},"resourceType":"Pat\\u0069ent"}\n',
        b'{"resourceType":"Patient","n":-0.0e+10,"big":123456789012345678901234567890}\n',
    ]
    for i, data in enumerate([patients] + odd):
        write("ndjson", bytes([i * 5]) + data)
    return 1 + len(odd)


def roundtrip_seeds():
    for data in [b"Lopez\x00http://loinc.org\x008867-4\x00other",
                 b"a,b|c$d\\e\x05sys|tem\x03co,de\x04x$y\\",
                 "Ñúñez O'Brien\x10urn:oid:1.2.3\x02é,\x03 \\ ".encode()]:
        write("search_roundtrip", data)
    return 3


if __name__ == "__main__":
    print("search_params", search_seeds())
    print("client_assertion", assertion_seeds())
    print("model", model_seeds())
    print("ndjson", ndjson_seeds())
    print("search_roundtrip", roundtrip_seeds())
