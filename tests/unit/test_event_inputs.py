"""What an event may ask of a worker: every refusal, and what still passes (Prefect-free)."""

import http.server
import threading

import pytest

from imagegen.brief_source import brief_from_source
from imagegen.errors import BriefError
from imagegen.event_inputs import check_brief_url, check_event_brief, confined_out_dir

PUBLIC = lambda host: ["93.184.215.14"]  # noqa: E731 - a resolver that answers one public address


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(BriefError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


def test_out_dir_inside_the_root_is_resolved(tmp_path):
    root = tmp_path / "output"
    root.mkdir()
    assert confined_out_dir(str(root / "spring"), root) == (root / "spring").resolve()
    assert confined_out_dir(str(root), root) == root.resolve()


@pytest.mark.parametrize("make", [
    lambda root: "/etc/cron.d",
    lambda root: str(root / ".." / "elsewhere"),
    lambda root: str(root.parent / "output-evil"),  # a sibling whose name starts like the root
    lambda root: "",
])
def test_out_dir_outside_the_root_is_refused(tmp_path, make):
    root = tmp_path / "output"
    root.mkdir()
    assert "event.payload.out_dir" in refused(confined_out_dir, make(root), root)


def test_out_dir_through_a_symlink_out_of_the_root_is_refused(tmp_path):
    root, outside = tmp_path / "output", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert "is outside IMAGEGEN_OUTPUT_ROOT" in refused(confined_out_dir, str(root / "link" / "x"), root)


@pytest.mark.parametrize("brief, reason", [
    (None, "missing"), ("", "missing"), ("   ", "missing"), (42, "not a int"),
    ("ftp://example.com/b.yaml", "not an http(s) URL"),
    ("http://example.com/b.yaml", "only https"),
    ("https://127.0.0.1/b.yaml", "127.0.0.1, a loopback"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254"),
    ("https://10.1.2.3/b.yaml", "10.1.2.3"),
    ("https://[::1]/b.yaml", "::1"),
    ("https://[fe80::1]/b.yaml", "fe80::1"),
    ("https://192.168.0.7/b.yaml", "192.168.0.7"),
    ("https://0.0.0.0/b.yaml", "0.0.0.0"),
])
def test_refused_briefs_name_the_field_and_the_reason(tmp_path, brief, reason):
    message = refused(check_event_brief, brief, tmp_path, [], resolve=lambda host: [host.strip("[]")])
    assert "event.payload.brief" in message and reason in message


def test_a_name_that_resolves_to_a_private_address_is_refused(tmp_path):
    message = refused(check_event_brief, "https://intranet.example/b.yaml", tmp_path, [],
                      resolve=lambda host: ["93.184.215.14", "10.0.0.8"])
    assert "'intranet.example' resolves to 10.0.0.8" in message and "IMAGEGEN_BRIEF_TRUSTED_HOSTS" in message


def test_a_trusted_host_may_use_http_and_a_private_address(tmp_path):
    check_event_brief("http://cms.internal/b.yaml", tmp_path, ["cms.internal"], resolve=lambda h: ["10.0.0.8"])
    check_event_brief("https://cdn.example.com/b.yaml", tmp_path, [], resolve=PUBLIC)


def test_brief_paths_must_lie_under_the_briefs_root(tmp_path):
    root = tmp_path / "briefs"
    root.mkdir()
    check_event_brief(str(root / "spring.yaml"), root, [])
    assert "is outside IMAGEGEN_BRIEFS_ROOT" in refused(check_event_brief, "/etc/passwd", root, [])
    assert "is outside IMAGEGEN_BRIEFS_ROOT" in refused(check_event_brief, str(root / ".." / "x.yaml"), root, [])


def test_inline_briefs_pass_the_location_check(tmp_path):
    check_event_brief({"campaign": "c"}, tmp_path, [])
    check_event_brief("campaign: c\nsubjects: []", tmp_path, [])


class _Redirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_every_redirect_hop_is_vetted_before_it_is_requested(tmp_path):
    """A public URL that redirects to the metadata service is refused at the hop, not fetched."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    vetted: list[str] = []

    def check(url: str) -> None:
        vetted.append(url)
        if "127.0.0.1" not in url:  # the test's own server stands in for a public host
            check_brief_url(url, [], resolve=lambda host: [host])

    try:
        message = refused(brief_from_source, f"http://127.0.0.1:{server.server_port}/b.yaml", tmp_path,
                          check_url=check)
    finally:
        server.shutdown()
    assert vetted[-1] == "http://169.254.169.254/latest/meta-data"
    assert "only https" in message
