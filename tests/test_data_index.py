"""The per-file indexes (atom counts, reaction ids): exact, cached by file identity, never trusted
blindly, and the LMDB readers work in forked DataLoader workers."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch

from horm.data import index
from horm.data.batch import Collater, SampleDataset
from horm.data.horm_lmdb import HormLmdb
from horm.data.store import HessianStore

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "horm" / "datasets" / "t1x_xtb"
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("HORM_CACHE_DIR", str(d))
    return d


def _copy(src: Path, dst: Path) -> Path:
    shutil.copyfile(src, dst)
    return dst


def test_horm_atom_counts_are_exact_and_cached(horm_sample_path, tmp_path, cache, monkeypatch):
    f = _copy(horm_sample_path, tmp_path / "a.lmdb")
    with HormLmdb(f) as ds:
        want = np.array([ds[i].natoms for i in range(len(ds))])
        assert len(np.unique(want)) > 4  # a real spread of sizes, so the length model is exercised
        got = index.atom_counts(ds)
        assert got.dtype == np.int32 and (got == want).all()
        assert len(list((cache / "index").glob("a.lmdb-natoms-*.npz"))) == 1
        monkeypatch.setattr(HormLmdb, "record_lengths", lambda self: pytest.fail("the cache was not used"))
        assert (index.atom_counts(ds) == want).all()


def test_a_changed_file_is_indexed_again(horm_sample_path, tmp_path, cache):
    f = _copy(horm_sample_path, tmp_path / "a.lmdb")
    with HormLmdb(f) as ds:
        first = index.identity(ds)
        index.atom_counts(ds)
    os.utime(f, ns=(1, 1))  # same bytes, another mtime
    with HormLmdb(f) as ds:
        assert index.identity(ds) != first
        assert (index.atom_counts(ds) == np.array([s.natoms for s in ds])).all()
    assert len(list((cache / "index").glob("*.npz"))) == 2


def test_a_damaged_or_lying_cache_is_rebuilt_not_trusted(horm_sample_path, tmp_path, cache):
    f = _copy(horm_sample_path, tmp_path / "a.lmdb")
    with HormLmdb(f) as ds:
        want = index.atom_counts(ds)
        (c,) = (cache / "index").glob("*.npz")
        c.write_bytes(b"not an npz")
        assert (index.atom_counts(ds) == want).all()
        np.savez(c, natoms=np.zeros(len(ds), dtype=np.int32))  # out of bounds
        assert (index.atom_counts(ds) == want).all()
        np.savez(c, natoms=want[:10])  # wrong count
        assert (index.atom_counts(ds) == want).all()


def test_records_outside_the_length_model_are_decoded(horm_sample_path, tmp_path, cache):
    """A record that carries extra fields (freq, eig_values: 3N each) is longer than the model
    says; it is decoded, so its count is still its own."""
    from _horm_pickle import dumps_record, ground_truth_mapping, stub_pyg

    f = _copy(horm_sample_path, tmp_path / "a.lmdb")
    env = lmdb.open(str(f), subdir=False, map_size=1 << 26)
    with stub_pyg(), env.begin(write=True) as txn:
        mapping = ground_truth_mapping(txn.get(b"5"))
        n = len(mapping["charges"])
        mapping["freq"] = torch.zeros(3 * n)
        mapping["eig_values"] = torch.zeros(3 * n)
        txn.put(b"5", dumps_record(mapping))
    env.close()
    with HormLmdb(f) as ds:
        assert (index.atom_counts(ds) == np.array([s.natoms for s in ds])).all()


def test_store_atom_counts_and_reactions(tmp_path, cache):
    with HessianStore.open(BUNDLED / "val.hstore") as st:
        want = np.array([s.natoms for s in st])
        assert (index.atom_counts(st) == want).all()
        codes, names = index.reaction_ids(st)
        assert [names[c] for c in codes] == [s.rxn for s in st]


def test_split_of_a_single_reaction_file_says_it_is_per_sample(horm_sample_path, cache):
    from horm.train.data import split_mask

    notes: list[str] = []
    with HormLmdb(horm_sample_path) as ds:
        mask = split_mask(ds, 0.2, 0, notes, "sample.lmdb")
    assert 0 < mask.sum() < len(mask)
    assert len(notes) == 1 and "one reaction id" in notes[0] and "per sample" in notes[0]


def test_split_by_reaction_keeps_reactions_whole(cache):
    from horm.train.data import split_mask

    notes: list[str] = []
    with HessianStore.open(BUNDLED / "train.hstore") as st:
        mask = split_mask(st, 0.3, 1, notes, "train")
        rxn = np.array([s.rxn for s in st])
    assert notes == []
    assert not set(rxn[mask]) & set(rxn[~mask]) and mask.any() and not mask.all()


@pytest.mark.parametrize("kind", ["horm", "store"])
def test_forked_workers_read_what_the_main_process_reads(kind, horm_sample_path):
    src = HormLmdb(horm_sample_path) if kind == "horm" else HessianStore.open(BUNDLED / "val.hstore")
    try:
        ds = SampleDataset(src, np.arange(40))
        plain = [b.pos for b in torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=Collater(torch.float64))]
        forked = torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=Collater(torch.float64), num_workers=2,
                                             multiprocessing_context="fork")
        got = [b.pos for b in forked]
        assert len(got) == len(plain) and all(torch.equal(a, b) for a, b in zip(got, plain))
        assert src[0].natoms > 0  # the parent's own environment still works after the workers
    finally:
        src.close()


def test_a_store_keeps_atom_counts_beside_its_chunks_and_verify_checks_them(tmp_path, cache):
    """Batching reads a new store's ``a:`` records, not its samples; appends to a partial chunk keep
    them right; a record that disagrees with its chunk is found by ``data verify``; an old store
    without them is indexed from its blobs."""
    from horm.data.verify import verify_store
    from horm.data.store_codec import atoms_key, pack_atoms

    with HessianStore.open(BUNDLED / "val.hstore") as src:
        samples = [src[i] for i in range(45)]
    p = tmp_path / "s.hstore"
    with HessianStore.create(p, "GFN2-xTB") as st:
        for a, b in ((0, 7), (7, 40), (40, 45)):  # partial chunks re-packed twice
            st.extend(samples[a:b])
    want = [len(s.numbers) for s in samples]
    with HessianStore.open(p) as st:
        assert st.meta["atoms_index"] and st.n_chunks > 1
        assert index._store_atom_records(st).tolist() == want
        reads, blobs = [], st.chunk_blobs
        st.chunk_blobs = lambda c: reads.append(c) or blobs(c)
        assert index.atom_counts(st).tolist() == want
        assert sorted(reads) == [0, st.n_chunks - 1]  # only the cache key's first and last records
    assert verify_store(p).damaged == []
    with HessianStore.open(p, readonly=False) as st, st._writing("test") as txn:
        st._put(txn, atoms_key(0), pack_atoms([w + 1 for w in want[:st.chunk_size]]))  # a well-sealed lie
    assert any("atom counts differ" in d for d in verify_store(p).damaged)
    with HessianStore.open(BUNDLED / "val.hstore") as old:  # written before the records
        assert "atoms_index" not in old.meta
        assert index.atom_counts(old).tolist() == [s.natoms for s in old]


def test_origin_weights_come_from_the_cached_origin_index_not_a_read(cache, horm_sample_path):
    """Weights by origin prefix, equal to the per-sample rule; the second call reads no sample; a HORM
    file's samples all have the origin 'horm', and are never read for it."""
    from horm.data.batch import SampleDataset
    from horm.data.io import origin_matches
    from horm.train.data import origin_weights

    rules = {"reactant": 10.0, "neb:final": 2.0, "neb:final:img3": 3.0}
    with HessianStore.open(BUNDLED / "train.hstore") as st:
        ds = SampleDataset(st, np.arange(5, len(st)))
        origins = [st[int(i)].origin for i in ds.indices]
        longest = sorted(rules, key=len, reverse=True)
        want = [next((rules[k] for k in longest if origin_matches(o, [k])), 1.0) for o in origins]
        assert len(set(want)) > 1  # the bundled store holds several stages
        assert origin_weights(ds, rules).tolist() == want
        reads, blobs = [], st.chunk_blobs
        st.chunk_blobs = lambda c: reads.append(c) or blobs(c)
        assert origin_weights(ds, rules).tolist() == want  # cached: only the cache key's two records
        assert sorted(reads) == [0, st.n_chunks - 1]
    with HormLmdb(horm_sample_path) as h:
        h.raw = None
        assert origin_weights(SampleDataset(h, np.arange(len(h))), {"horm": 0.5}).tolist() == [0.5] * len(h)
