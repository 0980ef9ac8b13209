"""The champion's search index: items of a dataset version embedded by one model, bound to both.

    mmcl index build --store models --root indexes --data-dir <train view> --dataset-md5 <md5>
    mmcl search --text "a dog runs on the beach" --k 10        (or --image PATH, --audio PATH)
    mmcl serve --port 8765                                     (JSON API + one HTML page on 127.0.0.1)

`store` builds and opens indexes (and refuses stale ones), `query` turns a text / image / clip into the
model's space, `serve` is the HTTP front end. Exact inner-product search in numpy: see bench/RESULTS.md
("Retrieval") for the measured comparison with FAISS that chose it.
"""
