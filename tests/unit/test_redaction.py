"""imagegen.redaction: URL settings masked wherever they are printed or stored.

Masking must never raise and never give back the secret, whatever it is handed: user info, secret
query and fragment parameters, IPv6 hosts, URLs without a scheme, key=value DSNs, and URLs too broken
for urllib to parse.
"""

from __future__ import annotations

import base64
import itertools
import logging

import httpx
import pytest

from imagegen.redaction import (
    MaskUrlsFilter,
    is_secret_name,
    mask_url,
    mask_url_fields,
    mask_urls_in,
    mask_urls_in_logs,
    url_location,
    url_secrets,
)

SECRET = "s3cret-VALUE"


# --------------------------------------------------------------------------- user info

@pytest.mark.parametrize(("url", "masked"), [
    ("http://user:s3cret-VALUE@host/path", "http://user:***@host/path"),
    ("https://ghp_s3cret-VALUE@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("redis://:s3cret-VALUE@cache:6379/0", "redis://:***@cache:6379/0"),
    ("postgresql://imagegen:s3cret%40VALUE@db:5432/assets", "postgresql://imagegen:***@db:5432/assets"),
    ("http://user:s3c@ret#VA?LUE@host/path", "http://user:***@host/path"),  # unencoded @ # ? in the password
    ("http://user:@host/", "http://user:***@host/"),
    ("http://@host/", "http://@host/"),
    ("HTTPS://User:s3cret-VALUE@Host:8443", "HTTPS://User:***@Host:8443"),
])
def test_user_info_is_masked(url, masked):
    assert mask_url(url) == masked


def test_a_url_without_credentials_comes_back_as_written():
    for url in ("https://ai.api.nvidia.com/v1/genai", "sqlite:///tmp/catalog.db", "supabase", "",
                "http://127.0.0.1:8000/v1/infer", "https://h/users/@me?page=2", "https://h/a?q=x%20y&lang=de#top"):
        assert mask_url(url) == url
        assert mask_url(url, query=False) == url


# --------------------------------------------------------------------------- query and fragment

@pytest.mark.parametrize("name", ["key", "api_key", "apikey", "API-Key", "token", "access_token", "secret",
                                  "client_secret", "password", "passwd", "pwd", "signature", "sig",
                                  "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token",
                                  "X-Goog-Signature", "AWSAccessKeyId", "sessionid", "auth", "jwt",
                                  "subscription-key", "x%2Damz%2Dsignature"])
def test_secret_looking_parameters_are_masked(name):
    url = f"https://host/path?size=10&{name}={SECRET}&format=png"
    assert is_secret_name(name)
    assert mask_url(url) == f"https://host/path?size=10&{name}=***&format=png"


@pytest.mark.parametrize("name", ["size", "format", "usageTypeKey", "page", "model", "bucket", "expires"])
def test_other_parameters_are_kept(name):
    url = f"https://host/path?{name}=value"
    assert not is_secret_name(name) and mask_url(url) == url


def test_fragment_parameters_are_masked_and_the_rest_kept():
    url = f"https://app/callback?state=abc#access_token={SECRET}&scope=openid&expires_in=3600"
    assert mask_url(url) == "https://app/callback?state=abc#access_token=***&scope=openid&expires_in=3600"


def test_a_secret_value_is_masked_whole():
    # a value runs to the next '&' or '#': an unencoded ';' or '/' or '=' inside it is masked with it
    assert mask_url(f"https://h/p?sig={SECRET};x=1/2==&a=b") == "https://h/p?sig=***&a=b"
    assert mask_url(f"https://h/p?token={SECRET}#frag") == "https://h/p?token=***#frag"
    assert mask_url(f"https://h/p;sig={SECRET}?size=1") == "https://h/p;sig=***?size=1"


def test_query_false_keeps_the_parameters_but_not_the_user_info():
    signed = "https://user:s3cret-VALUE@project.supabase.co/storage/v1/object/sign/b/k.png?token=eyJhbGciOi"
    assert mask_url(signed, query=False) == "https://user:***@project.supabase.co/storage/v1/object/sign/b/k.png" \
                                            "?token=eyJhbGciOi"


# --------------------------------------------------------------------------- hosts, schemes, DSNs

@pytest.mark.parametrize(("url", "masked"), [
    ("http://user:s3cret-VALUE@[::1]:8080/v1?token=s3cret-VALUE", "http://user:***@[::1]:8080/v1?token=***"),
    ("http://[2001:db8::7]/v1?api_key=s3cret-VALUE", "http://[2001:db8::7]/v1?api_key=***"),
    ("http://u:s3cret-VALUE@[fe80::1%25eth0]:80/", "http://u:***@[fe80::1%25eth0]:80/"),
])
def test_ipv6_hosts(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize(("url", "masked"), [
    ("user:s3cret-VALUE@db.internal:5432/assets", "user:***@db.internal:5432/assets"),
    ("//user:s3cret-VALUE@cdn.example/x", "//user:***@cdn.example/x"),
    ("host:8000/v1/infer?key=s3cret-VALUE", "host:8000/v1/infer?key=***"),
    ("/api/ds-prototypes/image/1/view?sig=s3cret-VALUE", "/api/ds-prototypes/image/1/view?sig=***"),
])
def test_urls_without_a_scheme(url, masked):
    assert mask_url(url) == masked


def test_key_value_dsns():
    assert mask_url("host=db user=me password='s3cret VALUE' sslmode=require") == \
        "host=db user=me password=*** sslmode=require"
    assert mask_url("host=db password=s3c@ret-VALUE dbname=x") == "host=db password=*** dbname=x"
    assert url_secrets("host=db password='s3cret VALUE'") == ["s3cret VALUE"]


# --------------------------------------------------------------------------- never raise, never leak

BROKEN = [
    "http://user:s3cret-VALUE@[::1",  # unclosed IPv6 bracket: urlsplit raises
    "http://user:s3cret-VALUE@host:notaport/",
    "http://user:s3cret-VALUE@[zz::zz]/",
    "http://user:s3cret-VALUE@",
    "user:s3cret-VALUE@",
    "http://user:s3cret-VALUE@host/\udcff?token=s3cret-VALUE",  # a lone surrogate, as os.environ may hold
    "http://user:s3cret-VALUE@host/%zz%?token=s3cret-VALUE",
    "http://user:s3c ret-VALUE@host/",  # white space in the user info
    "http:///user:s3cret-VALUE@host",  # a stray slash: the user info is in the path
    "http://user:s3cret/VALUE@host/v1?token=s3cret-VALUE",  # an unencoded '/' in the password
    "::::?token=s3cret-VALUE",
    "?token=s3cret-VALUE",
    "#access_token=s3cret-VALUE",
    "http://host?token=s3cret-VALUE@other",  # '@' in a query before any path: masked too much, not too little
    "\x00http://user:s3cret-VALUE@host\n",
]


@pytest.mark.parametrize("url", BROKEN)
def test_broken_urls_are_masked_without_raising(url):
    url_secrets(url)
    for shown in (mask_url(url), url_location(url)):
        assert "s3c" not in shown and "ret-VALUE" not in shown


def test_no_input_makes_it_raise():
    odd = ["", " ", "@", "//", ":", "?", "#", "=", "&&==", "[", "]", "%", "\udcff", "a" * 10_000, "@" * 500,
           "http://" + "[" * 100, "k=" * 300]
    for text in odd:
        mask_url(text), mask_url(text, query=False), url_location(text), mask_urls_in(text), url_secrets(text)
    assert url_secrets(None) == []


@pytest.mark.parametrize(("scheme", "user", "host", "path", "tail"), list(itertools.product(
    ["http://", "https://", "postgresql://", "//", ""],
    ["user:{s}@", "{s}@", ":{s}@", "u%40x:{s}@"],
    ["host", "host:8080", "[::1]:8080", "10.0.0.1"],
    ["", "/", "/v1/genai", "/a@b"],
    ["", "?token={s}", "?a=1&api_key={s}", "#access_token={s}", "?X-Amz-Signature={s}&X-Amz-Credential={s}"],
)))
def test_the_secret_never_survives_masking(scheme, user, host, path, tail):
    url = (scheme + user + host + path + tail).format(s=SECRET)
    assert SECRET not in mask_url(url)
    assert SECRET not in url_location(url)
    if scheme.endswith("://"):  # what free text is searched for
        assert SECRET not in mask_urls_in(f"POST {url} failed")
    assert SECRET in url_secrets(url)


# --------------------------------------------------------------------------- locations, secrets, text

def test_url_location_drops_query_and_fragment_and_masks_user_info():
    assert url_location(f"https://user:{SECRET}@h:1/v1/genai/m?token={SECRET}#x") == "https://user:***@h:1/v1/genai/m"
    assert url_location("https://s3.example/b/result.zip?X-Amz-Signature=abc") == "https://s3.example/b/result.zip"
    assert url_location("/api/ds-prototypes/image/1/view?sig=abc") == "/api/ds-prototypes/image/1/view"
    assert url_location("http://host?token=abc") == "http://host"


def test_endpoint_labels_of_httpx_requests_are_masked():
    from imagegen.providers.http import endpoint_label

    request = httpx.Request("POST", f"http://user:{SECRET}@127.0.0.1:9/v1/genai?token={SECRET}")
    assert endpoint_label(request) == "POST http://user:***@127.0.0.1:9/v1/genai"


def test_url_secrets_name_what_a_server_may_echo():
    url = f"http://user:{SECRET}%21@host/path?token=tok-{SECRET}&size=1"
    found = url_secrets(url)
    basic = base64.b64encode(f"user:{SECRET}!".encode()).decode()  # what httpx sends as Basic auth
    assert f"{SECRET}%21" in found and f"{SECRET}!" in found and basic in found and f"tok-{SECRET}" in found
    assert "size" not in found and "1" not in found and "user" not in found
    assert base64.b64encode(b"ghp_tok:").decode() in url_secrets("https://ghp_tok@github.com")


def test_mask_urls_in_text():
    text = (f"transport error on POST http://user:{SECRET}@h/x?token={SECRET}, then 'https://a:{SECRET}@c/d'. "
            f'urllib3: http://h:80 "GET /?token={SECRET}%2Fapi&page=2 HTTP/1.1" 401; quotas?usageTypeKey=images')
    masked = mask_urls_in(text)
    assert SECRET not in masked
    assert masked == ("transport error on POST http://user:***@h/x?token=***, then 'https://a:***@c/d'. "
                      'urllib3: http://h:80 "GET /?token=***&page=2 HTTP/1.1" 401; quotas?usageTypeKey=images')


def test_mask_url_fields_masks_only_url_fields():
    fields = [("base_url", f"http://u:{SECRET}@h"), ("url", f"http://u:{SECRET}@h"), ("model", f"{SECRET}"),
              ("token_url", None), (None, "positional")]
    assert mask_url_fields(fields) == [("base_url", "http://u:***@h"), ("url", "http://u:***@h"),
                                       ("model", SECRET), ("token_url", None), (None, "positional")]


def test_log_filter_masks_http_library_records(caplog):
    mask_urls_in_logs(["imagegen.test.http"])
    mask_urls_in_logs(["imagegen.test.http"])  # once only
    logger = logging.getLogger("imagegen.test.http")
    assert sum(isinstance(f, MaskUrlsFilter) for f in logger.filters) == 1
    with caplog.at_level(logging.INFO, logger="imagegen.test.http"):
        logger.info('HTTP Request: %s %s "%s"', "GET", httpx.URL(f"http://user:{SECRET}@h/x?key={SECRET}"), "200")
        logger.info("no URL here: %d", 3)
    assert SECRET not in caplog.text
    assert 'HTTP Request: GET http://user:***@h/x?key=*** "200"' in caplog.text and "no URL here: 3" in caplog.text


def test_the_http_libraries_loggers_are_filtered_once_imagegen_talks_http():
    import imagegen.providers.http  # noqa: F401 - installs the filters
    import imagegen.stores.remote  # noqa: F401

    for name in ("httpx", "urllib3.connectionpool"):
        assert sum(isinstance(f, MaskUrlsFilter) for f in logging.getLogger(name).filters) == 1


def test_log_filter_leaves_a_record_it_cannot_format_to_its_handler():
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "broken %d", ("not a number",), None)
    assert MaskUrlsFilter().filter(record) and record.msg == "broken %d"
