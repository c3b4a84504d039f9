//! Prototype native kernel for rune.ivm (not part of the package): the bulk index build of
//! `store.Relation.insert` into an empty relation (`store._builder`), i.e. grouping rows of
//! ids by the key columns of each index into 1-tuples, lists (<= limit items) and sets.
use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PySet, PyTuple};

const KEY_BITS: u32 = 32;

struct Group {
    key: PyObject,
    items: Vec<PyObject>,
}

/// build(arity, shapes, maps, rows, limit): fill the empty dicts `maps` (one per shape: the
/// key columns of an index) with the groups of `rows` (distinct tuples of ints).
#[pyfunction]
fn build(
    py: Python<'_>,
    arity: usize,
    shapes: Vec<Vec<usize>>,
    maps: Vec<Bound<'_, PyDict>>,
    rows: &Bound<'_, PyAny>,
    limit: usize,
) -> PyResult<()> {
    let rests: Vec<Vec<usize>> = shapes
        .iter()
        .map(|cols| (0..arity).filter(|p| !cols.contains(p)).collect())
        .collect();
    let mut grouped: Vec<HashMap<u64, usize>> = shapes.iter().map(|_| HashMap::new()).collect();
    let mut groups: Vec<Vec<Group>> = shapes.iter().map(|_| Vec::new()).collect();
    let mut ids: Vec<u64> = vec![0; arity];
    for row in rows.iter()? {
        let row = row?;
        let row = row.downcast::<PyTuple>()?;
        for (p, id) in ids.iter_mut().enumerate() {
            *id = row.get_item(p)?.extract::<u64>()?;
        }
        for (i, cols) in shapes.iter().enumerate() {
            let mut key: u64 = 0;
            for &c in cols {
                key = (key << KEY_BITS) | ids[c];
            }
            let rest = &rests[i];
            let item: PyObject = if rest.len() == 1 {
                row.get_item(rest[0])?.unbind()
            } else {
                let parts: Vec<Bound<'_, PyAny>> =
                    rest.iter().map(|&p| row.get_item(p)).collect::<PyResult<_>>()?;
                PyTuple::new_bound(py, parts).into_any().unbind()
            };
            let at = match grouped[i].get(&key) {
                Some(&at) => at,
                None => {
                    let key_obj: PyObject = if cols.len() == 1 {
                        row.get_item(cols[0])?.unbind()
                    } else {
                        key.into_py(py)
                    };
                    groups[i].push(Group { key: key_obj, items: Vec::new() });
                    grouped[i].insert(key, groups[i].len() - 1);
                    groups[i].len() - 1
                }
            };
            groups[i][at].items.push(item);
        }
    }
    for (i, m) in maps.iter().enumerate() {
        for g in groups[i].drain(..) {
            let n = g.items.len();
            if n == 1 {
                m.set_item(g.key, PyTuple::new_bound(py, g.items))?;
            } else if n <= limit {
                m.set_item(g.key, PyList::new_bound(py, g.items))?;
            } else {
                m.set_item(g.key, PySet::new_bound(py, &g.items)?)?;
            }
        }
    }
    Ok(())
}

#[pymodule]
fn rune_ivm_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build, m)?)?;
    Ok(())
}
