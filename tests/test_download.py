"""The download stage against a real HTTP server on 127.0.0.1 serving the sample mirror
(data/sample/mirror), with faults injected by the server: cut connections, 503s, ignored
ranges, corrupt files, hostile metadata. Also month resolution on real enwiki metadata, the
Wikidata JSON entity dump nearest a month's enwiki run, and one manifest per job."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import logging
import re
import shutil
import socket
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from mirror_kit import (REAL_DATA, SAMPLE_MIRROR, WIKIDATA_DIR, build_entities_run,
                        split_entity_dump, write_listing)
from twiki.engine.artifacts import MANIFEST
from twiki.sources.download import (DownloadConfig, download_month, download_wikidata, entities_folder,
                            find_downloaded, find_downloaded_wikidata, manifest_path,
                            multistream_parts, read_download_manifest, resolve_run,
                            resolve_wikidata_run)
from twiki.errors import (ChecksumError, ConfigError, DownloadError, DumpNotReadyError,
                          NoDumpError, UnsafePathError)
from twiki.engine.paths import DataRoot

DUMPMETA = REAL_DATA / "dumpmeta"
RUN = "20160501"
MONTH = "2016-05"
# Tests must not wait on backoff: same logic, tiny delays.
FAST = DownloadConfig(attempts=3, backoff_s=0.01, max_backoff_s=0.05,
                      connect_timeout_s=2, read_timeout_s=5, chunk_bytes=64 * 1024)


# ------------------------------------------------------------------------------- fixtures

class MirrorServer:
    """State shared with the handler: what was asked, and the faults to play."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[tuple[str, dict]] = []
        self.faults: dict[str, list[str]] = {}  # URL path -> actions, one used per request
        self.ignore_range = False
        self.lock = threading.Lock()
        self.url = ""

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]

    def requests_for(self, name: str) -> list[dict]:
        return [h for p, h in self.requests if p.endswith("/" + name)]


def _handler(state: MirrorServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            with self.server_lock:
                state.requests.append((path, dict(self.headers)))
                queue = state.faults.get(path) or []
                fault = queue.pop(0) if queue else None
            if fault == "503":
                self.send_error(503, "busy")
                return
            local = (state.root / path.lstrip("/")).resolve()
            if not local.is_relative_to(state.root.resolve()):
                self.send_error(403)
                return
            if local.is_dir():
                local = local / "index.html"  # like nginx: the folder's listing
            if not local.is_file():
                self.send_error(404)
                return
            data = local.read_bytes()
            start = 0
            ranged = self.headers.get("Range")
            if ranged and not state.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", ranged).group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault == "cut":  # half the promised bytes, then the connection drops
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

        server_lock = state.lock

    return Handler


@pytest.fixture
def serve():
    """serve(root) -> a running MirrorServer for that folder, stopped after the test."""
    servers = []

    def start(root: Path) -> MirrorServer:
        state = MirrorServer(root)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                                  daemon=True)
        thread.start()
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        servers.append((httpd, thread))
        return state

    yield start
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A private copy of the sample mirror that a test may damage."""
    return Path(shutil.copytree(SAMPLE_MIRROR, tmp_path / "mirror"))


@pytest.fixture
def server(serve, mirror) -> MirrorServer:
    return serve(mirror)


@pytest.fixture
def root(tmp_path) -> DataRoot:
    return DataRoot(tmp_path / "data")


def run_dir(mirror: Path) -> Path:
    return mirror / "enwiki" / RUN


def job_files(mirror: Path) -> dict[str, dict]:
    status = json.loads((run_dir(mirror) / "dumpstatus.json").read_text())
    return status["jobs"]["articlesmultistreamdump"]["files"]


def sha1sums(mirror: Path) -> dict[str, str]:
    text = (run_dir(mirror) / f"enwiki-{RUN}-sha1sums.txt").read_text()
    return {name: digest for digest, name in (line.split() for line in text.splitlines())}


def edit_dumpstatus(mirror: Path, edit) -> None:
    path = run_dir(mirror) / "dumpstatus.json"
    status = json.loads(path.read_text())
    edit(status)
    path.write_text(json.dumps(status))


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def biggest_file(mirror: Path) -> str:
    files = job_files(mirror)
    return max(files, key=lambda n: files[n]["size"])


# ------------------------------------------------------------------------------- happy path

def test_download_over_http_then_rerun_is_a_noop(server, mirror, root, caplog):
    folder = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)

    assert folder == root.root / "raw" / "enwiki" / RUN
    expected = sha1sums(mirror)
    assert len(expected) == 4
    job_manifest = "_manifest.articlesmultistreamdump.json"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*expected, job_manifest])
    for name, digest in expected.items():
        assert sha1(folder / name) == digest
    manifest = json.loads((folder / job_manifest).read_text())
    assert read_download_manifest(folder) == manifest
    assert (manifest["stage"], manifest["wiki"], manifest["run"], manifest["month"]) == \
        ("download", "enwiki", RUN, MONTH)
    assert manifest["job"] == "articlesmultistreamdump"
    assert manifest["mirror"] == server.url
    assert {f["name"]: f["sha1"] for f in manifest["files"]} == expected
    assert all(f["size"] == (folder / f["name"]).stat().st_size for f in manifest["files"])
    assert manifest["code_version"] and manifest["created"] and "total_s" in manifest["timings"]
    assert len(multistream_parts(manifest)) == 2

    server.requests.clear()
    with caplog.at_level(logging.INFO, logger="twiki"):
        again = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert again == folder
    assert server.requests == []
    assert "already downloaded" in caplog.text
    assert find_downloaded(root, "enwiki", MONTH) == folder


def test_missing_file_after_download_is_fetched_again(server, mirror, root):
    folder = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    name = biggest_file(mirror)
    (folder / name).unlink()
    assert find_downloaded(root, "enwiki", MONTH) is None

    server.requests.clear()
    download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert sha1(folder / name) == sha1sums(mirror)[name]
    fetched = {p.rsplit("/", 1)[1] for p in server.paths() if p.endswith(".bz2")}
    assert fetched == {name}  # the files still there were verified, not downloaded again


# ------------------------------------------------------------------------------- resume

def test_cut_connection_is_resumed_with_a_range_request(server, mirror, root):
    name = biggest_file(mirror)
    server.faults[f"/enwiki/{RUN}/{name}"] = ["cut"]
    single_try = DownloadConfig(attempts=1, backoff_s=0, connect_timeout_s=2, read_timeout_s=5,
                                chunk_bytes=64 * 1024)

    with pytest.raises(DownloadError) as err:
        download_month(MONTH, mirrors=server.url, data_root=root, config=single_try)
    assert name in str(err.value)
    folder = root.raw("enwiki", RUN)
    part = folder / (name + ".part")
    size = job_files(mirror)[name]["size"]
    kept = part.stat().st_size
    assert 0 < kept < size
    assert not (folder / name).exists() and not manifest_path(folder).exists()

    download_month(MONTH, mirrors=server.url, data_root=root, config=single_try)
    ranges = [h.get("Range") for h in server.requests_for(name)]
    assert ranges[-1] == f"bytes={kept}-"  # only the missing bytes were asked for
    assert sha1(folder / name) == sha1sums(mirror)[name]
    assert not part.exists()


def test_cut_connection_is_resumed_within_the_same_run(server, mirror, root):
    name = biggest_file(mirror)
    server.faults[f"/enwiki/{RUN}/{name}"] = ["cut", "cut"]
    folder = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert [h.get("Range") is not None for h in server.requests_for(name)] == [False, True, True]
    assert sha1(folder / name) == sha1sums(mirror)[name]


def test_server_ignoring_range_restarts_from_zero(server, mirror, root):
    name = biggest_file(mirror)
    server.faults[f"/enwiki/{RUN}/{name}"] = ["cut"]
    server.ignore_range = True  # answers 200 with the whole file to a Range request
    folder = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    asked = server.requests_for(name)
    assert len(asked) == 2 and asked[-1].get("Range")  # the 200 answer was used as is
    assert sha1(folder / name) == sha1sums(mirror)[name]


def test_stale_partial_file_that_does_not_verify_is_downloaded_again(server, mirror, root):
    name = biggest_file(mirror)
    folder = root.raw("enwiki", RUN)
    folder.mkdir(parents=True)
    (folder / (name + ".part")).write_bytes(b"x" * (job_files(mirror)[name]["size"] // 3))
    download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert sha1(folder / name) == sha1sums(mirror)[name]
    assert [bool(h.get("Range")) for h in server.requests_for(name)] == [True, False]


# ------------------------------------------------------------------------------- verification

def test_corrupt_file_on_the_mirror_raises_checksum_error_and_publishes_nothing(
        server, mirror, root):
    name = biggest_file(mirror)
    path = run_dir(mirror) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern changed
    path.write_bytes(bytes(data))

    with pytest.raises(ChecksumError) as err:
        download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    message = str(err.value)
    assert name in message
    assert sha1sums(mirror)[name] in message  # expected
    assert hashlib.sha1(bytes(data)).hexdigest() in message  # actual
    folder = root.raw("enwiki", RUN)
    assert not (folder / name).exists()
    assert not (folder / (name + ".part")).exists()
    assert not manifest_path(folder).exists() and not (folder / MANIFEST).exists()
    assert find_downloaded(root, "enwiki", MONTH) is None


def test_md5sums_are_used_when_there_is_no_sha1sums(server, mirror, root):
    (run_dir(mirror) / f"enwiki-{RUN}-sha1sums.txt").unlink()
    folder = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    manifest = read_download_manifest(folder)
    assert {f["verified_with"] for f in manifest["files"]} == {"md5"}


def test_checksum_in_dumpstatus_wins_over_sums_files(server, mirror, root):
    name = biggest_file(mirror)
    edit_dumpstatus(mirror, lambda s: s["jobs"]["articlesmultistreamdump"]["files"][name]
                    .update(sha1="0" * 40))
    with pytest.raises(ChecksumError) as err:
        download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert "0" * 40 in str(err.value)


def test_file_without_any_checksum_is_refused_before_downloading(server, mirror, root):
    for algo in ("sha1", "md5"):
        (run_dir(mirror) / f"enwiki-{RUN}-{algo}sums.txt").unlink()
    with pytest.raises(ChecksumError, match="cannot be verified"):
        download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert not any(p.endswith(".bz2") for p in server.paths())
    assert files_under(root.root) == []


# ------------------------------------------------------------------------------- resolution

def test_month_without_a_run_lists_the_runs_nearby(server, root):
    with pytest.raises(NoDumpError) as err:
        download_month("2016-07", mirrors=server.url, data_root=root, config=FAST)
    assert not isinstance(err.value, DumpNotReadyError)
    assert "2016-07" in str(err.value) and "20160601" in str(err.value)


def test_job_in_progress_is_not_ready(server, mirror, root):
    edit_dumpstatus(mirror, lambda s: s["jobs"]["articlesmultistreamdump"]
                    .update(status="in-progress"))
    with pytest.raises(DumpNotReadyError) as err:
        download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert RUN in str(err.value) and "in-progress" in str(err.value)
    assert err.value.exit_code == 75
    assert files_under(root.root) == []


def test_unknown_job_names_the_jobs_there(server, root):
    with pytest.raises(NoDumpError) as err:
        resolve_run(server.url, "enwiki", MONTH, job="nosuchjob", config=FAST)
    assert not isinstance(err.value, DumpNotReadyError)
    assert "articlesmultistreamdump" in str(err.value)


def test_unreadable_listing_falls_back_to_the_usual_run_dates(server, mirror, root):
    (mirror / "enwiki" / "index.html").unlink()  # the server now answers /enwiki/ with 404
    run = resolve_run(server.url, "enwiki", MONTH, config=FAST)
    assert run.run_date == RUN
    assert f"/enwiki/{RUN}/dumpstatus.json" in server.paths()


# ------------------------------------------------------------------------------- retries

def test_503_is_retried_then_succeeds(server, mirror, root):
    name = biggest_file(mirror)
    server.faults[f"/enwiki/{RUN}/{name}"] = ["503", "503"]
    server.faults[f"/enwiki/{RUN}/dumpstatus.json"] = ["503"]
    folder = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert len(server.requests_for(name)) == 3
    assert sha1(folder / name) == sha1sums(mirror)[name]


def test_503_on_every_try_gives_up_with_a_download_error(server, mirror, root):
    name = biggest_file(mirror)
    server.faults[f"/enwiki/{RUN}/{name}"] = ["503"] * 10
    with pytest.raises(DownloadError, match="503"):
        download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert len(server.requests_for(name)) == FAST.attempts


def test_404_is_not_retried(server, mirror, root):
    name = biggest_file(mirror)
    (run_dir(mirror) / name).unlink()
    with pytest.raises(DownloadError, match="404"):
        download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert len(server.requests_for(name)) == 1


# ------------------------------------------------------------------------------- hostile metadata

@pytest.mark.parametrize("bad_name", ["../evil.bz2", "/etc/x-twiki-test", "a/../../evil.bz2"])
def test_path_traversal_file_name_is_refused(server, mirror, root, tmp_path, bad_name):
    def add(status):
        status["jobs"]["articlesmultistreamdump"]["files"][bad_name] = {
            "size": 3, "url": f"/enwiki/{RUN}/evil.bz2", "sha1": "1" * 40}
    edit_dumpstatus(mirror, add)
    (run_dir(mirror) / "evil.bz2").write_bytes(b"bad")

    with pytest.raises(UnsafePathError):
        download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert files_under(root.root) == []
    assert not (tmp_path / "evil.bz2").exists()
    assert not Path("/etc/x-twiki-test").exists()
    assert not any(p.endswith(".bz2") for p in server.paths())


@pytest.mark.parametrize("bad_url", ["http://evil.example/x.bz2", "//evil.example/x.bz2",
                                     f"/enwiki/{RUN}/../../x.bz2", "/enwiki/%2e%2e/x.bz2"])
def test_url_leaving_the_mirror_is_refused(server, mirror, root, bad_url):
    name = biggest_file(mirror)
    edit_dumpstatus(mirror, lambda s: s["jobs"]["articlesmultistreamdump"]["files"][name]
                    .update(url=bad_url))
    with pytest.raises(UnsafePathError):
        download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert files_under(root.root) == []


# ------------------------------------------------------------------------------- mirrors

def test_local_folder_mirror(mirror, root):
    folder = download_month(MONTH, mirrors=mirror, data_root=root, config=FAST)
    for name, digest in sha1sums(mirror).items():
        assert sha1(folder / name) == digest
    assert read_download_manifest(folder)["mirror"] == str(mirror)


def test_local_folder_mirror_with_a_corrupt_file(mirror, root):
    name = biggest_file(mirror)
    with open(run_dir(mirror) / name, "r+b") as f:
        f.seek(100)
        f.write(b"\0" * 16)
    with pytest.raises(ChecksumError, match=re.escape(name)):
        download_month(MONTH, mirrors=mirror, data_root=root, config=FAST)
    assert not (root.raw("enwiki", RUN) / name).exists()


def test_fallback_when_the_first_mirror_is_down(server, mirror, root):
    down = f"http://127.0.0.1:{closed_port()}"
    folder = download_month(MONTH, mirrors=[down, server.url], data_root=root, config=FAST)
    manifest = read_download_manifest(folder)
    assert manifest["mirror"] == server.url
    assert manifest["mirrors_used"] == [server.url]
    for name, digest in sha1sums(mirror).items():
        assert sha1(folder / name) == digest


def test_fallback_when_the_first_mirror_serves_a_corrupt_file(serve, mirror, tmp_path, root):
    bad_copy = Path(shutil.copytree(mirror, tmp_path / "bad"))
    name = biggest_file(mirror)
    (run_dir(bad_copy) / name).write_bytes(b"\0" * job_files(mirror)[name]["size"])
    bad, good = serve(bad_copy), serve(mirror)
    folder = download_month(MONTH, mirrors=[bad.url, good.url], data_root=root, config=FAST)
    assert sha1(folder / name) == sha1sums(mirror)[name]
    assert good.requests_for(name)


# ------------------------------------------------------------------------------- real metadata

@pytest.fixture
def real_2023_mirror(tmp_path) -> Path:
    """The real enwiki listing and the real dumpstatus.json of the 20230301 run."""
    root = tmp_path / "real"
    run = root / "enwiki" / "20230301"
    run.mkdir(parents=True)
    shutil.copy(DUMPMETA / "enwiki_index.html", root / "enwiki" / "index.html")
    shutil.copy(DUMPMETA / "enwiki_20230301_dumpstatus.json", run / "dumpstatus.json")
    return root


def test_real_dumpstatus_resolves_march_2023(serve, real_2023_mirror):
    server = serve(real_2023_mirror)
    run = resolve_run(server.url, "enwiki", "2023-03", config=FAST)
    assert run.run_date == "20230301" and run.mirror == server.url
    assert run.status["status"] == "done"
    assert len(run.files) == 128
    assert all(f["url"] == f"/enwiki/20230301/{f['name']}" and f["size"] > 0
               for f in run.files)
    # The real multistream job has no checksums, and this mirror has no sums files.
    assert all(f["sha1"] is None and f["md5"] is None for f in run.files)
    assert "/enwiki/20230301/enwiki-20230301-sha1sums.txt" in server.paths()


def test_real_dumpstatus_history_job_is_not_ready(real_2023_mirror):
    with pytest.raises(DumpNotReadyError) as err:
        resolve_run(real_2023_mirror, "enwiki", "2023-03", job="metahistorybz2dump",
                    config=FAST)
    assert "20230301" in str(err.value) and "in-progress" in str(err.value)


def test_real_listing_month_without_run(real_2023_mirror):
    with pytest.raises(NoDumpError) as err:
        resolve_run(real_2023_mirror, "enwiki", "2023-04", config=FAST)
    assert "20230301" in str(err.value)


def test_real_multistream_job_without_checksums_is_refused(real_2023_mirror, root):
    with pytest.raises(ChecksumError, match="cannot be verified"):
        download_month("2023-03", mirrors=real_2023_mirror, data_root=root, config=FAST)
    assert files_under(root.root) == []


def test_multistream_parts_pairs_the_real_file_names():
    status = json.loads((DUMPMETA / "enwiki_20230301_dumpstatus.json").read_text())
    names = list(status["jobs"]["articlesmultistreamdump"]["files"])
    pairs = multistream_parts({"files": [{"name": n} for n in reversed(names)]})

    assert len(pairs) == 64
    assert pairs[0] == ("enwiki-20230301-pages-articles-multistream1.xml-p1p41242.bz2",
                        "enwiki-20230301-pages-articles-multistream-index1.txt-p1p41242.bz2")
    assert pairs[-1][0] == "enwiki-20230301-pages-articles-multistream27.xml-p72975910p73177822.bz2"
    keys = []
    for data, index in pairs:
        part, first, last = re.search(r"multistream(\d+)\.xml-p(\d+)p(\d+)", data).groups()
        assert index == data.replace(f"multistream{part}.xml", f"multistream-index{part}.txt")
        keys.append((int(part), int(first)))
    assert keys == sorted(keys)
    assert [part for part, _ in keys[:11]] == list(range(1, 12))  # numeric, not 1, 10, 11, 2

    single = list(status["jobs"]["articlesmultistreamdumprecombine"]["files"])
    assert multistream_parts({"files": [{"name": n} for n in single]}) == [
        ("enwiki-20230301-pages-articles-multistream.xml.bz2",
         "enwiki-20230301-pages-articles-multistream-index.txt.bz2")]
    both = multistream_parts({"files": [{"name": n} for n in names + single]})
    assert both == pairs  # the combined file repeats the parts' pages: not listed twice


# ------------------------------------------------------------------------------- sample mirror

def test_sample_entities_dump_is_in_the_real_format():
    run = SAMPLE_MIRROR / WIKIDATA_DIR / WD_RUN
    data = bz2.decompress((run / f"wikidata-{WD_RUN}-all.json.bz2").read_bytes())
    gz = (run / f"wikidata-{WD_RUN}-all.json.gz").read_bytes()
    assert gzip.decompress(gz) == data
    members, rest = 0, gz
    while rest:  # several gzip members, like the real file
        inflate = zlib.decompressobj(wbits=31)
        inflate.decompress(rest)
        rest, members = inflate.unused_data, members + 1
    assert members == 13
    lines = data.split(b"\n")
    assert lines[0] == b"[" and lines[-2:] == [b"]", b""]
    assert all(line.endswith(b",") for line in lines[1:-3]) and lines[-3].endswith(b"}")
    entities = [json.loads(line) for line in split_entity_dump(data)]
    ids = [e["id"] for e in entities]
    assert len(ids) == len(set(ids)) == 197   # 126 real + 45 made-up items + 26 made-up property lines
    assert {e["type"] for e in entities} == {"item", "property"}
    by_id = {e["id"]: e for e in entities}
    assert by_id["Q42"]["sitelinks"]["enwiki"]["title"] == "Douglas Adams"
    assert by_id["Q1"]["labels"]["en"]["value"] == "universe"  # the full answer, not the trimmed
    assert "P434" in by_id and "Q8646" in by_id and "P3467" in by_id
    sums = {n: h for h, n in (line.split() for line in
                              (run / f"wikidata-{WD_RUN}-sha1sums.txt").read_text().splitlines())}
    assert sums == {f"wikidata-{WD_RUN}-all.json.{f}": sha1(run / f"wikidata-{WD_RUN}-all.json.{f}")
                    for f in ("bz2", "gz")}


# ------------------------------------------------------------------------- one manifest per job

def add_job(mirror: Path, job: str, name: str, blob: bytes) -> None:
    """A finished job with one file, its checksums in dumpstatus.json (as the real host does for
    most jobs)."""
    (run_dir(mirror) / name).write_bytes(blob)
    edit_dumpstatus(mirror, lambda s: s["jobs"].update({job: {
        "status": "done", "updated": "2016-05-02 01:00:00", "files": {name: {
            "size": len(blob), "url": f"/enwiki/{RUN}/{name}",
            "sha1": hashlib.sha1(blob).hexdigest(), "md5": hashlib.md5(blob).hexdigest()}}}}))


def test_two_jobs_of_one_run_keep_their_own_manifests(server, mirror, root):
    stats = f"enwiki-{RUN}-site_stats.sql.gz"
    add_job(mirror, "sitestatstable", stats,
            gzip.compress(b"INSERT INTO `site_stats` VALUES (1,0,0,0,0,0);\n", mtime=0))
    articles = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    other = download_month(MONTH, mirrors=server.url, data_root=root, job="sitestatstable",
                           config=FAST)

    assert other == articles
    first = read_download_manifest(articles)
    second = read_download_manifest(articles, "sitestatstable")
    assert first["job"] == "articlesmultistreamdump" and len(first["files"]) == 4
    assert second["job"] == "sitestatstable" and [f["name"] for f in second["files"]] == [stats]
    assert second["files"][0]["verified_with"] == "sha1+md5"
    assert find_downloaded(root, "enwiki", MONTH) == articles
    assert find_downloaded(root, "enwiki", MONTH, job="sitestatstable") == articles

    server.requests.clear()
    download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    download_month(MONTH, mirrors=server.url, data_root=root, job="sitestatstable", config=FAST)
    assert server.requests == []

    (articles / stats).unlink()  # one job's loss does not hide the other
    assert find_downloaded(root, "enwiki", MONTH, job="sitestatstable") is None
    assert find_downloaded(root, "enwiki", MONTH) == articles


def test_folder_with_only_a_legacy_manifest_is_still_downloaded(server, root):
    folder = download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    manifest_path(folder).replace(folder / MANIFEST)  # as written before manifests were per job
    assert find_downloaded(root, "enwiki", MONTH) == folder
    assert read_download_manifest(folder)["run"] == RUN
    assert find_downloaded(root, "enwiki", MONTH, job="sitestatstable") is None
    with pytest.raises(ConfigError):
        find_downloaded(root, "enwiki", MONTH, job="../x")


# ------------------------------------------------------------------------------- wikidata entities

WD_RUN = "20160502"
WD_FILE = f"wikidata-{WD_RUN}-all.json.bz2"


def wd_path(run: str = WD_RUN, fmt: str = "bz2") -> str:
    return f"/{WIKIDATA_DIR}/{run}/wikidata-{run}-all.json.{fmt}"


def wd_sums(mirror: Path, run: str = WD_RUN, algo: str = "sha1") -> dict[str, str]:
    text = (mirror / WIKIDATA_DIR / run / f"wikidata-{run}-{algo}sums.txt").read_text()
    return {name: digest for digest, name in (line.split() for line in text.splitlines())}


def add_entities_run(mirror: Path, run_date: str, **kw) -> Path:
    """Another entities run made of a few of the sample's real entities (small: fast)."""
    data = bz2.decompress((mirror / WIKIDATA_DIR / WD_RUN / WD_FILE).read_bytes())
    run = build_entities_run(mirror, split_entity_dump(data)[:3], run_date=run_date, **kw)
    write_listing(mirror, WIKIDATA_DIR)
    return run


def test_wikidata_download_then_rerun_is_a_noop(server, mirror, root, caplog):
    folder = download_wikidata(MONTH, mirrors=server.url, data_root=root, config=FAST)

    assert folder == root.root / "raw" / "wikidatawiki" / "entities" / WD_RUN
    assert folder == entities_folder(root, WD_RUN)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [WD_FILE, "_manifest.entities-all-json.json"])
    assert sha1(folder / WD_FILE) == wd_sums(mirror)[WD_FILE]
    entities = split_entity_dump(bz2.decompress((folder / WD_FILE).read_bytes()))
    assert len(entities) == 197
    manifest = read_download_manifest(folder, "entities-all-json")
    assert (manifest["stage"], manifest["wiki"], manifest["job"], manifest["run"],
            manifest["month"], manifest["for_enwiki_run"]) == \
        ("download", "wikidatawiki", "entities-all-json", WD_RUN, MONTH, RUN)
    assert manifest["format"] == "bz2" and manifest["days_from_enwiki_run"] == 1
    [record] = manifest["files"]
    assert record["name"] == WD_FILE and record["size"] == (folder / WD_FILE).stat().st_size
    assert record["sha1"] == wd_sums(mirror)[WD_FILE]
    assert record["md5"] == wd_sums(mirror, algo="md5")[WD_FILE]
    assert record["verified_with"] == "sha1+md5"
    # Nothing on disk for enwiki: its run of the month was resolved on the mirror.
    assert f"/enwiki/{RUN}/dumpstatus.json" in server.paths()
    assert find_downloaded_wikidata(root, MONTH) == folder
    assert find_downloaded_wikidata(root, "2016-06") is None

    server.requests.clear()
    with caplog.at_level(logging.INFO, logger="twiki"):
        assert download_wikidata(MONTH, mirrors=server.url, data_root=root, config=FAST) == folder
    assert server.requests == []
    assert "already downloaded" in caplog.text


def test_wikidata_follows_the_downloaded_enwiki_run(server, mirror, root):
    download_month(MONTH, mirrors=server.url, data_root=root, config=FAST)
    add_entities_run(mirror, "20160425")
    server.requests.clear()
    folder = download_wikidata(MONTH, mirrors=server.url, data_root=root, config=FAST)
    assert folder.name == WD_RUN
    assert not any(p.startswith("/enwiki/") for p in server.paths())  # read from the manifest
    assert server.paths()[0] == f"/{WIKIDATA_DIR}/"


def test_nearest_entities_run_wins_and_ties_go_to_the_earlier(server, mirror, root):
    for run in ("20160425", "20160504", "20160509"):  # Mondays and a Wednesday, as on the host
        add_entities_run(mirror, run)

    def nearest(enwiki_run: str) -> str:
        return resolve_wikidata_run(server.url, enwiki_run, config=FAST).run_date

    assert nearest("20160501") == "20160502"
    assert nearest("20160503") == "20160502"  # 20160502 and 20160504 are both 1 day away
    assert nearest("20160507") == "20160509"
    assert nearest("20160428") == "20160425"  # 3 days before beats 4 days after

    folder = download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run="20160507",
                               config=FAST)
    assert folder.name == "20160509"
    assert sha1(folder / "wikidata-20160509-all.json.bz2") == \
        wd_sums(mirror, "20160509")["wikidata-20160509-all.json.bz2"]
    assert not (root.root / "raw" / "wikidatawiki" / "entities" / WD_RUN).exists()


def test_unfinished_entities_run_is_not_ready(server, mirror, root):
    add_entities_run(mirror, WD_RUN, listed=())  # files there, not yet in the sums files
    add_entities_run(mirror, "20160425")
    for algo in ("sha1", "md5"):  # a run folder that has nothing finished at all
        (mirror / WIKIDATA_DIR / "20160425" / f"wikidata-20160425-{algo}sums.txt").unlink()
    with pytest.raises(DumpNotReadyError) as err:
        download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run=RUN, config=FAST)
    message = str(err.value)
    assert WD_RUN in message and "20160425" in message and "Try again later" in message
    assert err.value.exit_code == 75
    assert files_under(root.root) == []
    assert not any(p.endswith((".bz2", ".gz")) for p in server.paths())


def test_unfinished_nearest_run_gives_way_to_a_finished_one_in_the_window(server, mirror, root):
    add_entities_run(mirror, WD_RUN, listed=())
    add_entities_run(mirror, "20160509")
    folder = download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run=RUN,
                               config=FAST)
    assert folder.name == "20160509"
    assert read_download_manifest(folder, "entities-all-json")["days_from_enwiki_run"] == 8


def test_no_entities_run_in_the_window_lists_the_runs_seen(server, root):
    with pytest.raises(NoDumpError) as err:
        download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run="20160701",
                          config=FAST)
    assert not isinstance(err.value, DumpNotReadyError)
    assert WD_RUN in str(err.value) and "14 days" in str(err.value)
    with pytest.raises(NoDumpError, match=WD_RUN):
        download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run=RUN,
                          window_days=0, config=FAST)
    assert files_under(root.root) == []


def test_gz_when_asked_or_when_only_it_is_finished(server, mirror, root):
    folder = download_wikidata(MONTH, mirrors=server.url, data_root=root, fmt="gz", config=FAST)
    name = f"wikidata-{WD_RUN}-all.json.gz"
    assert [f["name"] for f in read_download_manifest(folder, "entities-all-json")["files"]] \
        == [name]
    assert sha1(folder / name) == wd_sums(mirror)[name]

    later = DataRoot(root.root.parent / "later")
    add_entities_run(mirror, "20160509", listed=("gz",))  # its bz2 is still being written
    folder = download_wikidata(MONTH, mirrors=server.url, data_root=later,
                               enwiki_run="20160508", config=FAST)
    manifest = read_download_manifest(folder, "entities-all-json")
    assert (folder.name, manifest["format"], manifest["requested_format"]) == \
        ("20160509", "gz", "bz2")
    server.requests.clear()
    download_wikidata(MONTH, mirrors=server.url, data_root=later, enwiki_run="20160508",
                      config=FAST)
    assert server.requests == []


def test_corrupt_entities_file_raises_checksum_error_and_publishes_nothing(server, mirror, root):
    path = mirror / WIKIDATA_DIR / WD_RUN / WD_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as err:
        download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run=RUN, config=FAST)
    assert WD_FILE in str(err.value) and wd_sums(mirror)[WD_FILE] in str(err.value)
    assert files_under(root.root) == []  # no file, no .part, no manifest
    assert find_downloaded_wikidata(root, MONTH) is None


def test_cut_entities_transfer_is_resumed_with_a_range_request(server, mirror, root):
    server.faults[wd_path()] = ["cut"]
    single_try = DownloadConfig(attempts=1, backoff_s=0, connect_timeout_s=2, read_timeout_s=5,
                                chunk_bytes=16 * 1024)
    with pytest.raises(DownloadError, match=WD_FILE):
        download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run=RUN,
                          config=single_try)
    folder = entities_folder(root, WD_RUN)
    part = folder / (WD_FILE + ".part")
    kept = part.stat().st_size
    assert 0 < kept < (mirror / WIKIDATA_DIR / WD_RUN / WD_FILE).stat().st_size
    assert find_downloaded_wikidata(root, MONTH) is None

    download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run=RUN,
                      config=single_try)
    assert server.requests_for(WD_FILE)[-1].get("Range") == f"bytes={kept}-"
    assert sha1(folder / WD_FILE) == wd_sums(mirror)[WD_FILE]
    assert not part.exists()


def test_entities_from_the_second_mirror_when_the_first_is_down(server, mirror, root):
    down = f"http://127.0.0.1:{closed_port()}"
    folder = download_wikidata(MONTH, mirrors=[down, server.url], data_root=root,
                               enwiki_run=RUN, config=FAST)
    manifest = read_download_manifest(folder, "entities-all-json")
    assert manifest["mirror"] == server.url and manifest["mirrors_used"] == [server.url]
    local = download_wikidata(MONTH, mirrors=mirror, data_root=DataRoot(root.root / "local"),
                              enwiki_run=RUN, config=FAST)
    assert sha1(local / WD_FILE) == sha1(folder / WD_FILE)


def test_one_entities_run_can_serve_two_months(server, root):
    folder = download_wikidata(MONTH, mirrors=server.url, data_root=root, enwiki_run=RUN,
                               config=FAST)
    server.requests.clear()
    again = download_wikidata("2016-04", mirrors=server.url, data_root=root,
                              enwiki_run="20160430", config=FAST)
    assert again == folder
    assert not server.requests_for(WD_FILE)  # the file there verified, not fetched again
    assert read_download_manifest(folder, "entities-all-json")["months"] == \
        {"2016-04": "20160430", MONTH: RUN}
    assert find_downloaded_wikidata(root, MONTH) == folder
    assert find_downloaded_wikidata(root, "2016-04") == folder


@pytest.mark.parametrize("kw", [{"fmt": "xz"}, {"enwiki_run": "2016-05-01"},
                                {"enwiki_run": "20160231"}, {"window_days": -1}])
def test_bad_wikidata_arguments_are_config_errors(server, root, kw):
    with pytest.raises(ConfigError):
        download_wikidata(MONTH, mirrors=server.url, data_root=root, config=FAST, **kw)
    assert server.requests == []
