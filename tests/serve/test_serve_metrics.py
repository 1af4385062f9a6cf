"""/metrics: values kept in a memory-mapped table per process, summed over every worker."""

from __future__ import annotations

from keel.serve.metrics import ServeMetrics, ValueTable, parse


def test_a_value_table_reads_back_from_its_file_after_growing(tmp_path):
    table = ValueTable(tmp_path / "1.metrics", size=64)        # grows many times
    for i in range(300):
        table.add(f"requests|/route{i}|200", i)
    table.add("requests|/route7|200", 0.5)
    values = parse((tmp_path / "1.metrics").read_bytes())
    assert len(values) == 300 and values["requests|/route7|200"] == 7.5 and values["requests|/route299|200"] == 299


def test_metrics_of_one_process_count_requests_and_batches():
    metrics = ServeMetrics()
    for seconds in (0.0005, 0.003, 0.2):
        metrics.request("/predict", 200, seconds)
    metrics.batch(3)
    text = metrics.render(lambda: {"run": "Train/1"})
    assert 'keel_serve_requests_total{route="/predict",status="200"} 3' in text
    assert 'keel_serve_request_seconds_bucket{route="/predict",le="0.001"} 1' in text
    assert 'keel_serve_request_seconds_bucket{route="/predict",le="0.005"} 2' in text
    assert 'keel_serve_request_seconds_count{route="/predict"} 3' in text
    assert 'keel_serve_batch_rows_bucket{le="4"} 1' in text and "keel_serve_batch_rows_sum 3.0" in text
