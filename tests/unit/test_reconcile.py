"""One asset, one status (imagegen.reconcile): which recorded rows and files an asset's new publish
leaves behind, and how a put tells an update from a file changed behind the catalog's back."""

from __future__ import annotations

from imagegen.reconcile import RecordedFile, found_problem, leftovers

MASTER_SHA = "m" * 64


def recorded(variant: str, status: str = "published", store: str = "local", ext: str = "jpg",
             master_sha256: str | None = MASTER_SHA, sha256: str = "a" * 64) -> RecordedFile:
    return RecordedFile(variant=variant, store=store, key=f"camp/hero/{variant}.{ext}", sha256=sha256, status=status,
                        master_sha256=master_sha256)


PUBLISHED = [recorded("master", ext="png"), recorded("thumb"), recorded("banner")]


def location(variant: str, store: str = "local", ext: str = "jpg") -> tuple[str, tuple[str, str]]:
    return variant, (store, f"camp/hero/{variant}.{ext}")


def test_a_quarantined_master_leaves_no_published_row_or_public_file():
    found = leftovers("camp", "hero", PUBLISHED, [location("master", "quarantine", "png")], status="quarantined",
                      master_sha256=MASTER_SHA)
    assert found.previous_status == "published"
    assert found.rows == [("camp", "hero", "thumb"), ("camp", "hero", "banner")]  # the master row is updated
    assert found.files == [("local", "camp/hero/master.png"), ("local", "camp/hero/thumb.jpg"),
                           ("local", "camp/hero/banner.jpg")]


def test_a_master_published_again_leaves_its_quarantined_copy_and_reasons():
    held = [recorded("master", "quarantined", "quarantine", "png")]
    found = leftovers("camp", "hero", held, [location("master", ext="png"), location("thumb")], status="published",
                      master_sha256=MASTER_SHA)
    assert found.rows == []
    assert found.files == [("quarantine", "camp/hero/master.png"), ("quarantine", "camp/hero/reasons.json")]


def test_an_unchanged_publish_leaves_nothing_and_keeps_variants_it_does_not_render():
    """A size-set run added `story`: the campaign's own rerun (same master) keeps it."""
    rows = [*PUBLISHED, recorded("story")]
    stored = [location("master", ext="png"), location("thumb"), location("banner")]
    found = leftovers("camp", "hero", rows, stored, status="published", master_sha256=MASTER_SHA)
    assert not found and found.rows == [] and found.files == []


def test_variants_of_an_earlier_master_go_with_it():
    """A new master renders other responsive widths: the old renditions are not this master's."""
    rows = [*PUBLISHED, recorded("web_jpeg_480w"), recorded("legacy", master_sha256=None)]
    stored = [location("master", ext="png"), location("thumb"), location("banner")]
    found = leftovers("camp", "hero", rows, stored, status="published", master_sha256="n" * 64)
    assert found.rows == [("camp", "hero", "web_jpeg_480w")]  # a row without master_sha256 is not judged
    assert found.files == [("local", "camp/hero/web_jpeg_480w.jpg")]


def test_a_file_that_moved_to_another_store_leaves_the_old_one():
    found = leftovers("camp", "hero", PUBLISHED, [location("master", "gitlab", "png"), location("thumb"),
                                                  location("banner")], status="published", master_sha256=MASTER_SHA)
    assert found.rows == [] and found.files == [("local", "camp/hero/master.png")]


def test_found_problem_tells_an_update_from_a_changed_or_missing_file():
    row = recorded("thumb", sha256="a" * 64)
    where = {"store": "local", "key": "camp/hero/thumb.jpg"}
    assert found_problem("hero", "thumb", **where, written=True, replaced_sha256="a" * 64, recorded=row) is None
    assert found_problem("hero", "thumb", **where, written=False, replaced_sha256=None, recorded=row) is None
    changed = found_problem("hero", "thumb", **where, written=True, replaced_sha256="b" * 64, recorded=row)
    assert changed is not None and (changed.problem, changed.found_sha256, changed.expected_sha256) == (
        "changed", "b" * 64, "a" * 64)
    assert "local:camp/hero/thumb.jpg" in changed.line() and "rewritten from the master" in changed.line()
    missing = found_problem("hero", "thumb", **where, written=True, replaced_sha256=None, recorded=row)
    assert missing is not None and missing.problem == "missing" and "was missing" in missing.line()
    # a first publish writes without a row: nothing to report; bytes under a key no row names are
    unrowed = found_problem("hero", "thumb", **where, written=True, replaced_sha256="b" * 64, recorded=None)
    assert found_problem("hero", "thumb", **where, written=True, replaced_sha256=None, recorded=None) is None
    assert unrowed is not None and unrowed.expected_sha256 is None and "no row named it" in unrowed.line()
    elsewhere = recorded("thumb", store="supabase")
    assert found_problem("hero", "thumb", **where, written=True, replaced_sha256=None, recorded=elsewhere) is None
