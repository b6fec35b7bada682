"""OpenVINO's own streams under load (option own_streams): one worker process on all the streams' CPUs, compiled with
NUM_STREAMS and the THROUGHPUT hint as benchmark_app -nstreams does, an infer request per stream served at once; and
a real server run in which that one process serves two queries at a time, with what OpenVINO read back."""

import json

from bench.backends.threads import thread_settings
from bench.plan.matrix import expand
from bench.plan.suite import load_suite
from bench.run.offline import stream_cpus
from conftest import TINY_GENERATOR, TINY_MODEL, bench_cli, two_cpus, write_suite

OWN = """\
name: own
defaults:
  seq_lens: [128]
  batch_sizes: [8]
  threads: [1]
  streams: [2]
  scenario: server
  rates: [400]
  arrivals: constant
  measure: {warmup: 2, min_iterations: 3, min_seconds: 0.05, max_seconds: 2, timeout: 300, server_seconds: 2}
""" + TINY_MODEL + """\
backends:
  - name: ov-own
    type: openvino
    options: {own_streams: true}
"""


def test_own_streams_make_one_process_of_all_the_streams_threads_split_by_openvino(tmp_path):
    [case] = expand(load_suite(write_suite(tmp_path, OWN))[0])
    assert case.own_streams and case.streams == 2 and case.threads == 1 and case.process_threads == 2
    places = {0: (0, 0), 1: (0, 1)}
    assert stream_cpus(case, places) == [[0, 1]]
    assert thread_settings("openvino", case.process_threads, case.streams) == {
        "INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 2, "PERFORMANCE_HINT": "THROUGHPUT", "ENABLE_CPU_PINNING": True,
    }  # fmt: skip
    assert thread_settings("openvino", 2)["NUM_STREAMS"] == 1  # a latency stream otherwise
    single = expand(load_suite(write_suite(tmp_path, OWN.replace("streams: [2]", "streams: [1]"), "one.yaml"))[0])
    assert not single[0].own_streams and single[0].process_threads == 1  # one stream: nothing to split
    plain = OWN.replace("    options: {own_streams: true}\n", "")
    [processes] = expand(load_suite(write_suite(tmp_path, plain, "plain.yaml"))[0])
    assert not processes.own_streams and stream_cpus(processes, places) == [[0], [1]]
    assert processes.case_id != case.case_id


@two_cpus
def test_a_real_server_run_on_openvinos_own_streams_serves_two_queries_at_once_in_one_process(tmp_path):
    out = tmp_path / "out"
    result = bench_cli("run", write_suite(tmp_path, OWN), "--out", out)
    [row] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert row["status"] == "ok" and row["accuracy"]["passed"], (row.get("reason"), result.stderr[-2000:])
    effective, reported = row["effective"], row["effective"]["backend"]
    assert (reported["NUM_STREAMS"], reported["PERFORMANCE_HINT"], reported["INFERENCE_NUM_THREADS"]) == (
        2, "THROUGHPUT", 2)
    assert not [w for w in row["warnings"] if w.startswith("asked")], row["warnings"]
    assert row["details"]["own_streams"]["infer_requests"] == 2 and sorted(effective["cpus"]) == [0, 1]
    [records] = row["server"]["records"]
    calls = sorted((start, end) for start, end in zip(records["dispatch_ms"], records["done_ms"]) if end is not None)
    overlapping = sum(later[0] < earlier[1] for earlier, later in zip(calls, calls[1:]))
    assert overlapping > len(calls) / 10, (overlapping, len(calls))  # two infer requests at once, one process
    markdown = bench_cli("show", out, "--format", "md").stdout
    assert "| 2 × 1 (OpenVINO streams) |" in markdown


def test_generation_on_own_streams_is_left_out_and_said_once(tmp_path):
    from bench.plan.matrix import dropped_combinations

    text = OWN.replace(TINY_MODEL, TINY_GENERATOR).replace("streams: [2]", "streams: [1, 2]")
    suite = load_suite(write_suite(tmp_path, text))[0]
    assert [c.streams for c in expand(suite)] == [1]
    notes = [n for n in dropped_combinations(suite) if "own_streams" in n]
    assert notes == ["gen on ov-own: own_streams serves forward-pass calls; its generation cases of more than one"
                     " stream are left out (each request calls the model class, one infer request)"]
