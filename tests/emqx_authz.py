"""A small model of EMQX 5.8's file authorizer, to test the rules central writes without EMQX.

EMQX is not installable here (no Debian package, nothing on PyPI), so the tests evaluate the
generated ``acl.conf`` with this model of EMQX's documented semantics (``apps/emqx_auth/etc/
acl.conf`` and ``emqx_authz_rule.erl`` as of v5.8.9):

* the file is a sequence of Erlang terms, each ended by a dot; ``%`` starts a comment;
* rules are tried in order and the first that matches decides (``allow``/``deny``); none:
  ``authorization.no_match``;
* a rule is ``{Permission, Who, Action, Topics}`` or ``{Permission, all}``; Who is ``all``,
  ``{username|user, S}``, ``{clientid|client, S}`` (either also ``{re, Regex}``),
  ``{client_attr, Name, Value}`` and ``{'and'|'or', [...]}``; Action is ``publish``,
  ``subscribe`` or ``all``; Topics is ``all`` or a list of topic filters (``+``, ``#``, the
  ``$``-topic rule), ``{eq, T}`` / ``"eq T"`` for a literal match, and placeholders
  ``${username}``, ``${clientid}``, ``${cert_common_name}``, ``${client_attrs.NAME}``, which
  are rendered and then matched as filters (an unknown value: the topic does not match);
* a subscription is checked on its filter, matched word by word against the rule (a ``+`` in
  the subscription matches only a ``+`` or a wildcard in the rule); a shared subscription
  (``$share/group/...``, ``$queue/...``) is checked on the filter inside it;
* a client's username and client id come from its certificate CN when the listener's zone
  says ``peer_cert_as_username``/``peer_cert_as_clientid = cn``; its client attributes come
  from ``client_attrs_init`` of the listener's zone, where only the constant form
  ``concat(['...'])`` and plain variable names (``cn``, ``username``, ``clientid``) are modelled.

Not modelled (none is used by the rules central writes; a rule using one raises
:class:`NotModelled` instead of guessing): ``{ipaddr(s), ...}``, actions with QoS or retain
conditions, the ``$delayed/`` prefix, other variform functions; nor the authorization cache,
authenticators, superusers, other authorization sources, or deliveries (EMQX checks a
subscription once, not each message it delivers). Regular expressions are Python's, not PCRE.
"""

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Term = Any  # str (string), Atom, int, tuple, list


class NotModelled(Exception):
    """The rules or the configuration use something this model does not cover."""


@dataclass(frozen=True)
class Atom:
    name: str


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>%[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<quoted>'(?:[^'\\]|\\.)*')
      | (?P<int>-?\d+)
      | (?P<atom>[a-z][A-Za-z0-9_@]*)
      | (?P<punct>[{}\[\],.])
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            return
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"acl.conf: cannot read {text[pos : pos + 30]!r}")
        pos = match.end()
        kind = match.lastgroup
        assert kind is not None
        if kind != "comment":
            yield kind, match.group(kind)


def _unescape(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def parse_terms(text: str) -> list[Term]:
    """The Erlang terms of a file read by ``file:consult/1`` (the subset rules use)."""
    tokens = list(_tokens(text))
    pos = 0

    def term() -> Term:
        nonlocal pos
        kind, value = tokens[pos]
        pos += 1
        if kind == "string":
            return _unescape(value)
        if kind == "quoted":
            return Atom(_unescape(value))
        if kind == "atom":
            return Atom(value)
        if kind == "int":
            return int(value)
        if value in "{[":
            close = "}" if value == "{" else "]"
            items: list[Term] = []
            while tokens[pos][1] != close:
                items.append(term())
                if tokens[pos][1] == ",":
                    pos += 1
                elif tokens[pos][1] != close:
                    raise ValueError(f"acl.conf: expected ',' or {close!r}, got {tokens[pos]}")
            pos += 1
            return tuple(items) if close == "}" else items
        raise ValueError(f"acl.conf: unexpected {value!r}")

    terms = []
    while pos < len(tokens):
        terms.append(term())
        if pos >= len(tokens) or tokens[pos][1] != ".":
            raise ValueError("acl.conf: a term must end with '.'")
        pos += 1
    return terms


@dataclass(frozen=True)
class Client:
    """What the rules see of a connected client."""

    username: str
    clientid: str
    cn: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def var(self, name: str) -> str | None:
        if name == "username":
            return self.username
        if name == "clientid":
            return self.clientid
        if name == "cert_common_name":
            return self.cn
        if name.startswith("client_attrs."):
            return self.attrs.get(name.removeprefix("client_attrs."))
        raise NotModelled(f"placeholder ${{{name}}}")


def _words(topic: str) -> list[str]:
    return topic.split("/")


def _match_words(name: list[str], filt: list[str]) -> bool:
    """emqx_topic:match/2 on words: ``name`` may itself be a filter (a subscription)."""
    if name and name[0].startswith("$") and filt and filt[0] in ("+", "#"):
        return False
    for i, word in enumerate(filt):
        if word == "#":
            return True
        if i >= len(name):
            return False
        if word != "+" and word != name[i]:
            return False
    return len(name) == len(filt)


def topic_matches(filt: str, topic: str) -> bool:
    """Whether MQTT filter ``filt`` matches ``topic`` (or a subscription's filter)."""
    return _match_words(_words(topic), _words(filt))


def _real_topic(topic: str) -> str:
    if topic.startswith("$share/"):
        return topic.split("/", 2)[2]
    if topic.startswith("$queue/"):
        return topic.removeprefix("$queue/")
    return topic


def _who(client: Client, who: Term) -> bool:
    if who == Atom("all"):
        return True
    if isinstance(who, tuple) and who and isinstance(who[0], Atom):
        kind = who[0].name
        if kind in ("and", "or") and len(who) == 2 and isinstance(who[1], list):
            results = [_who(client, w) for w in who[1]]
            return all(results) if kind == "and" else any(results)
        if kind in ("username", "user", "clientid", "client") and len(who) == 2:
            actual = client.username if kind in ("username", "user") else client.clientid
            return _value(actual, who[1])
        if kind == "client_attr" and len(who) == 3:
            actual_attr = client.attrs.get(who[1])
            return actual_attr is not None and _value(actual_attr, who[2])
    raise NotModelled(f"who {who!r}")


def _value(actual: str, expected: Term) -> bool:
    if isinstance(expected, str):
        return actual == expected
    if isinstance(expected, tuple) and expected[:1] == (Atom("re"),) and len(expected) == 2:
        return re.search(expected[1], actual) is not None
    raise NotModelled(f"value {expected!r}")


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_.]+)\}")


def _topic(client: Client, topic: str, cond: Term) -> bool:
    words = _words(_real_topic(topic))
    if isinstance(cond, tuple) and len(cond) == 2 and cond[0] == Atom("eq"):
        return words == _words(cond[1])
    if not isinstance(cond, str):
        raise NotModelled(f"topic {cond!r}")
    if cond.startswith("eq "):
        return words == _words(cond.removeprefix("eq "))
    unknown = False

    def render(match: re.Match[str]) -> str:
        nonlocal unknown
        value = client.var(match.group(1))
        if value is None:
            unknown = True
            return ""
        return value

    rendered = _PLACEHOLDER.sub(render, cond)
    return not unknown and _match_words(words, _words(rendered))


def _action(action: str, cond: Term) -> bool:
    if cond == Atom("all"):
        return True
    if cond in (Atom("publish"), Atom("subscribe")):
        return action == cond.name
    raise NotModelled(f"action {cond!r}")


@dataclass(frozen=True)
class Rules:
    """The rules of one ``acl.conf`` and what applies when none matches."""

    rules: list[tuple[Term, ...]]
    no_match: str

    @classmethod
    def parse(cls, text: str, no_match: str) -> "Rules":
        rules = []
        for rule in parse_terms(text):
            if not isinstance(rule, tuple) or len(rule) not in (2, 4):
                raise NotModelled(f"rule {rule!r}")
            if rule[0] not in (Atom("allow"), Atom("deny")):
                raise ValueError(f"acl.conf: a rule starts with allow or deny: {rule!r}")
            if len(rule) == 2:
                if rule[1] != Atom("all"):
                    raise ValueError(f"acl.conf: a two-element rule is {{Perm, all}}: {rule!r}")
                rule = (rule[0], Atom("all"), Atom("all"), Atom("all"))
            rules.append(rule)
        return cls(rules, no_match)

    def decide(self, client: Client, action: str, topic: str) -> str:
        """``allow`` or ``deny`` for ``client`` publishing or subscribing to ``topic``."""
        for perm, who, action_cond, topics in self.rules:
            if not _action(action, action_cond) or not _who(client, who):
                continue
            if topics == Atom("all") or any(_topic(client, topic, t) for t in topics):
                return str(perm.name)
        return self.no_match


def _cert_field(mqtt: Mapping[str, Any], key: str, cn: str, fallback: str) -> str:
    mode = str(mqtt.get(key, "disabled"))
    if mode == "cn":
        return cn
    if mode == "disabled":
        return fallback
    raise NotModelled(f"mqtt.{key} = {mode}")


def _variform(expression: str, bound: Mapping[str, str]) -> str:
    constant = re.fullmatch(r"concat\(\[\s*'([^']*)'\s*\]\)", expression)
    if constant:
        return constant.group(1)
    if expression in bound:
        return bound[expression]
    raise NotModelled(f"client_attrs_init expression {expression!r}")


def connect(conf: Mapping[str, Any], listener: str, cn: str, clientid: str = "x") -> Client:
    """The client EMQX makes of a certificate ``cn`` on ``listener`` (``ssl.<name>``), from the
    parsed ``emqx.conf`` (a pyhocon tree): zone settings over the global ``mqtt`` ones."""
    kind, name = listener.split(".")
    zone = conf["listeners"][kind][name].get("zone", "default")
    mqtt = dict(conf.get("mqtt", {}))
    if zone != "default":
        mqtt.update(conf["zones"][zone].get("mqtt", {}))
    username = _cert_field(mqtt, "peer_cert_as_username", cn, "")
    clientid = _cert_field(mqtt, "peer_cert_as_clientid", cn, clientid)
    bound = {"cn": cn, "username": username, "clientid": clientid}
    attrs = {
        str(init["set_as_attr"]): _variform(str(init["expression"]), bound)
        for init in mqtt.get("client_attrs_init", [])
    }
    return Client(username=username, clientid=clientid, cn=cn, attrs=attrs)
