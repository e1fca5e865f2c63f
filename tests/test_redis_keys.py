"""Every Redis key name is made in one module, core.keys: no other module of the product writes one
inline, and no Lua script builds one (a script gets every key it touches as KEYS, so Redis knows
them all, as Redis Cluster and any server-side key tracking require)."""
import ast
import re

from tests.support import ROOT

PRODUCT = ("platform", "telephony", "campaigns", "media", "tenants")
KEYS_MODULE = ROOT / "platform" / "core" / "keys.py"
# the first segment of every key name core.keys makes
KEY_PREFIX = re.compile(r"^(gw|call|calls|lim|dialer|stream|m|numbers|carriers):")
# a key fragment ('call:'), a name built inside a command's arguments, or a key taken from ARGV
LUA_BUILT_KEYS = (
    re.compile(r"""'[^'\n]*:[^'\n]*'|"[^"\n]*:[^"\n]*\""""),
    re.compile(r"redis\.call\([^)]*\.\."),
    re.compile(r"redis\.call\(\s*'\w+'\s*,\s*ARGV\b"),
)


def _modules():
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.parts and path != KEYS_MODULE:
                yield path, ast.parse(path.read_text(), str(path))


def _leading_text(node: ast.AST) -> str | None:
    """The text a string or f-string starts with (an f-string up to its first placeholder)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value)
    return None


def _lua_scripts():
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "redis.call(" in node.value:
                yield path, node.value


def test_no_module_but_core_keys_names_a_redis_key():
    inline = []
    for path, tree in _modules():
        in_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
        for node in ast.walk(tree):
            text = None if id(node) in in_fstrings else _leading_text(node)
            if text is not None and KEY_PREFIX.match(text):
                inline.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    assert inline == []


def test_lua_scripts_get_their_keys_as_KEYS():
    scripts = list(_lua_scripts())
    # the gateway's store, the caps and leases, the metrics writer: all found
    assert {path.name for path, _ in scripts} >= {"store.py", "leases.py", "writes.py"}
    built = []
    for path, lua in scripts:
        code = "\n".join(line.split("--", 1)[0] for line in lua.splitlines())  # comments may say anything
        for pattern in LUA_BUILT_KEYS:
            built += [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for m in pattern.finditer(code)]
    assert built == []


def test_the_checks_catch_an_inline_key():
    # the patterns above recognise what they must refuse
    fragment, built, from_argv = LUA_BUILT_KEYS
    assert fragment.search("local ck = 'call:' .. cmd['call_id']")
    assert fragment.search("redis.call('HGET', 'gw:pool', 'x')")
    assert built.search("redis.call('HGET', KEYS[1] .. ARGV[1], 'x')")
    assert from_argv.search("redis.call('GET', ARGV[1])")
    assert not any(p.search("redis.call('SADD', KEYS[2], ARGV[2 + 2 * j])") for p in LUA_BUILT_KEYS)
    assert KEY_PREFIX.match(_leading_text(ast.parse('f"stream:{sid}:agent"').body[0].value))
