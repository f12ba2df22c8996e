"""WebVPN links: the gateway's scheme, checked against links published for real hosts."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain.webvpn import LinkError, WebVpn

DEFAULT = WebVpn("https://webvpn.example.edu.cn")
IV_HEX = "77726476706e69737468656265737421"  # "wrdvpnisthebest!"


# Links as they appear in public code and documentation for these schools' gateways (all on the
# vendor's default key), reduced to scheme, port and encrypted host.
@pytest.mark.parametrize(("url", "prefix"), [
    ("https://kns.cnki.net", "/https/" + IV_HEX + "fbf952d2243e635930068cb8"),  # the example
    ("https://www.cnki.net/", "/https/" + IV_HEX + "e7e056d2243e635930068cb8"),  # v.nua.edu.cn
    ("https://bbs.uestc.edu.cn/", "/https/" + IV_HEX + "f2f552d232357b447d468ca88d1b203b"),  # webvpn.uestc.edu.cn
    ("https://idas.uestc.edu.cn/authserver/login", "/https/" + IV_HEX + "f9f3408f69256d436a0bc7a99c406d3652"),
    ("https://login.bit.edu.cn/authserver/login", "/https/" + IV_HEX + "fcf84695297e6a596a468ca88d1b203b"),
    ("https://lexue.bit.edu.cn", "/https/" + IV_HEX + "fcf25989227e6a596a468ca88d1b203b"),
    ("https://xmuxg.xmu.edu.cn/api", "/https/" + IV_HEX + "e8fa5484207e705d6b468ca88d1b203b"),  # webvpn.xmu.edu.cn
    ("https://oa.jlu.edu.cn/defaultroot/", "/https/" + IV_HEX + "fff60f962b2526557a1dc7af96"),  # vpns.jlu.edu.cn
    ("https://auth4.tsinghua.edu.cn/cgi-bin/get_challenge",
     "/https/" + IV_HEX + "f1e25594737e7c4377068ea48d546d30da79d227b1"),  # webvpn.tsinghua.edu.cn
    # Explicit ports, host names and IPv4 literals:
    ("http://opac.bupt.edu.cn:8080/beiyou.html", "/http-8080/" + IV_HEX + "ffe7409f69327d406a468ca88d1b203b"),
    ("http://jwxt.lntu.edu.cn:8080/eams/homeExt.action", "/http-8080/" + IV_HEX + "fae05988693c66446b468ca88d1b203b"),
    ("http://pcard.hfut.edu.cn:8080/code.jsp", "/http-8080/" + IV_HEX + "e0f4408e237e60566b1cc7a99c406d3657"),
    ("http://210.45.242.5:8080/opac/ajax_item.php", "/http-8080/" + IV_HEX + "a2a611d2736526022a5ac7f9"),  # hfut
    ("http://202.204.60.7:8080/nav_login", "/http-8080/" + IV_HEX + "a2a713d275603c1e2858c7fb"),  # elib.ustb.edu.cn
])
def test_links_match_the_published_ones(url: str, prefix: str) -> None:
    link = DEFAULT.encode(url)
    assert link.startswith("https://webvpn.example.edu.cn" + prefix)
    rest = url.split("://", 1)[1]
    path_start = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
    assert link == "https://webvpn.example.edu.cn" + prefix + rest[path_start:]
    assert DEFAULT.decode(link) == url


def test_a_published_link_decodes_to_its_target() -> None:
    gateway = WebVpn("https://vpn.hfut.edu.cn")
    link = "https://vpn.hfut.edu.cn/http-8080/" + IV_HEX + "a2a611d2736526022a5ac7f9/opac/ajax_item.php"
    assert gateway.decode(link) == "http://210.45.242.5:8080/opac/ajax_item.php"


def test_an_ipv6_literal_is_encrypted_in_its_bracketed_form() -> None:
    # No gateway publishes an IPv6 link we could find; the host is the bracketed literal, as a
    # browser's URL.host gives it, so the gateway can tell it from a name.
    link = DEFAULT.encode("http://[2001:da8:7007::1]:8080/a?b=1")
    assert link == "https://webvpn.example.edu.cn/http-8080/" + IV_HEX + "cba511cc766a6c512652defcc802796f34f8/a?b=1"
    cipher = Cipher(algorithms.AES(b"wrdvpnisthebest!"), CFB(b"wrdvpnisthebest!")).encryptor()
    host = (cipher.update(b"[2001:da8::1]") + cipher.finalize()).hex()
    assert DEFAULT.encode("https://[2001:da8::1]/") == f"https://webvpn.example.edu.cn/https/{IV_HEX}{host}/"
    assert DEFAULT.decode(link) == "http://[2001:da8:7007::1]:8080/a?b=1"


@pytest.mark.parametrize("url", ["ssh://jump.example.edu.cn", "ssh://jump.example.edu.cn:2222",
                                 "vnc://10.1.2.3:5901", "telnet://bbs.example.edu.cn", "https://kns.cnki.net?kw=x",
                                 "https://kns.cnki.net#top", "https://kns.cnki.net/a/b/?q=%E7%BD%91&x=1#f"])
def test_every_scheme_port_and_url_part_round_trips(url: str) -> None:
    link = DEFAULT.encode(url)
    scheme = url.split(":", 1)[0]
    assert link.split("/")[3].split("-")[0] == scheme
    assert DEFAULT.decode(link) == url


def test_another_key_gives_another_link_and_does_not_decode_the_default() -> None:
    school = WebVpn("https://webvpn.example.edu.cn", key=b"0123456789abcdef", iv=b"fedcba9876543210")
    link = school.encode("https://kns.cnki.net/")
    assert link.startswith("https://webvpn.example.edu.cn/https/" + b"fedcba9876543210".hex())
    assert school.decode(link) == "https://kns.cnki.net/"
    with pytest.raises(LinkError):
        DEFAULT.decode(link)
    with pytest.raises(LinkError):
        WebVpn("https://webvpn.example.edu.cn", key=b"0123456789abcdef").decode(DEFAULT.encode("https://kns.cnki.net/"))


@pytest.mark.parametrize("url", ["ftp://files.example.edu.cn/", "mailto:someone@example.edu.cn", "kns.cnki.net",
                                 "https://user:secret@kns.cnki.net/", "https://kns cnki.net/", "https://-bad.example/",
                                 "https://a.example:0/", "https://a.example:70000/", "https:///nohost",
                                 "http://[2001:zz::1]/", "https://a.example/a\nb"])
def test_urls_the_gateway_cannot_carry_are_refused(url: str) -> None:
    with pytest.raises(LinkError):
        DEFAULT.encode(url)


@pytest.mark.parametrize("link", ["https://other.example/https/" + IV_HEX + "fbf952d2243e635930068cb8",
                                  "https://webvpn.example.edu.cn/https/fbf952d2243e635930068cb8",
                                  "https://webvpn.example.edu.cn/gopher/" + IV_HEX + "fbf952d2243e635930068cb8",
                                  "https://webvpn.example.edu.cn/https/" + IV_HEX + "fbf952d2243e635930068cb",
                                  "https://webvpn.example.edu.cn/https/" + IV_HEX + "00112233",
                                  "https://webvpn.example.edu.cn/"])
def test_links_that_are_not_the_gateways_are_refused(link: str) -> None:
    with pytest.raises(LinkError):
        DEFAULT.decode(link)


def test_the_key_and_iv_are_16_bytes_and_the_gateway_a_base_url() -> None:
    with pytest.raises(ValueError):
        WebVpn("https://webvpn.example.edu.cn", key=b"short")
    with pytest.raises(ValueError):
        WebVpn("https://webvpn.example.edu.cn/portal")


# -- generated URLs ---------------------------------------------------------------------------------
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(lambda labels: ".".join(labels + ["edu", "cn"]))
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(lambda a: f"[{ipaddress.IPv6Address(a)}]")
PATH_CHARS = st.sampled_from(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%/"))
TAIL = st.tuples(st.text(PATH_CHARS, max_size=40), st.one_of(st.none(), st.text(PATH_CHARS, max_size=30)),
                 st.one_of(st.none(), st.text(PATH_CHARS, max_size=20))).map(
    lambda t: ("/" + t[0]) + ("" if t[1] is None else "?" + t[1]) + ("" if t[2] is None else "#" + t[2]))
URLS = st.builds(lambda scheme, host, port, tail: f"{scheme}://{host}{'' if port is None else ':' + str(port)}{tail}",
                 st.sampled_from(["http", "https", "ssh", "vnc", "telnet"]), st.one_of(NAME, IPV4, IPV6),
                 st.one_of(st.none(), st.integers(1, 65535)), st.one_of(st.just(""), TAIL))


@settings(max_examples=300, deadline=None)
@given(URLS)
def test_decode_inverts_encode_for_generated_urls(url: str) -> None:
    link = DEFAULT.encode(url)
    assert DEFAULT.decode(link) == url
    assert link.startswith("https://webvpn.example.edu.cn/") and IV_HEX in link
