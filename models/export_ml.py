#!/usr/bin/env python3
"""Exports the classic-ML (ai.onnx.ml) parity fixtures into models/ml/.

Every fixture is a scikit-learn / XGBoost / LightGBM model trained on small synthetic data with a
fixed seed, converted with skl2onnx or onnxmltools the way users convert them, and run with
onnxruntime (CPUExecutionProvider, one thread) for the reference outputs.

Layout of models/ml/<name>/:
  model.onnx           < 2 MB
  input_<k>.npy        k = position among the graph inputs (string columns are numpy '<U' arrays)
  output_<k>.npy       tensor outputs
  output_<k>.json      sequence-of-map outputs (ZipMap): a list of {key: probability} objects
MANIFEST.json lists each fixture with its inputs and outputs ({"name", "file", "kind", "key"} where
kind is "tensor" or "seq_map" and key is "int" or "str" for maps).

Usage
  python3 -m venv /work/mlenv && /work/mlenv/bin/pip install scikit-learn skl2onnx onnxmltools \
      xgboost lightgbm onnxruntime onnx==1.23.2 numpy
  /work/mlenv/bin/python models/export_ml.py [--only name ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort

warnings.filterwarnings("ignore")

_make_attribute = onnx.helper.make_attribute


def _make_attribute_bools_as_ints(key, value, *args, **kwargs):
    # skl2onnx passes numpy booleans for nodes_missing_value_tracks_true (HistGradientBoosting),
    # which onnx.helper rejects; the attribute is an int list.
    if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value) and all(
            isinstance(v, (bool, np.bool_, int, np.integer)) for v in value):
        value = [int(v) for v in value]
    return _make_attribute(key, value, *args, **kwargs)


onnx.helper.make_attribute = _make_attribute_bools_as_ints

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ml")
SEED = 0
N_TEST = 40
MAX_BYTES = 2 * 1024 * 1024


def data_clf(n_classes=2, n=400, f=8, seed=SEED):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n, n_features=f, n_informative=5, n_redundant=1,
                               n_classes=n_classes, n_clusters_per_class=1, random_state=seed)
    return x.astype(np.float32), y


def data_reg(n=400, f=8, seed=SEED):
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=n, n_features=f, n_informative=6, noise=5.0, random_state=seed)
    return x.astype(np.float32), y.astype(np.float32)


def skl(model, x, name="X", options=None, target_opset=None):
    from skl2onnx import to_onnx

    kw = {}
    if options is not None:
        kw["options"] = options
    if target_opset is not None:
        kw["target_opset"] = target_opset
    return to_onnx(model, x[:1], **kw)


def float_input(f):
    from onnxmltools.convert.common.data_types import FloatTensorType

    return [("input", FloatTensorType([None, f]))]


# ---------------------------------------------------------------------------------------------
# fixture builders: each returns (onnx model, {input name: array})


def fx_logreg_binary(zipmap=True):
    from sklearn.linear_model import LogisticRegression

    x, y = data_clf(2)
    m = LogisticRegression(max_iter=500).fit(x, y)
    opts = None if zipmap else {id(m): {"zipmap": False}}
    return skl(m, x, options=opts), {"X": x[-N_TEST:]}


def fx_logreg_multi(zipmap=True):
    from sklearn.linear_model import LogisticRegression

    x, y = data_clf(4)
    m = LogisticRegression(max_iter=500).fit(x, y)
    opts = None if zipmap else {id(m): {"zipmap": False}}
    return skl(m, x, options=opts), {"X": x[-N_TEST:]}


def fx_logreg_strlabels():
    from sklearn.linear_model import LogisticRegression

    x, y = data_clf(3)
    names = np.array(["cat", "dog", "emu"])[y]
    m = LogisticRegression(max_iter=500).fit(x, names)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_linear_svc():
    from sklearn.svm import LinearSVC

    x, y = data_clf(3)
    m = LinearSVC(max_iter=5000).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_linear_regression():
    from sklearn.linear_model import Ridge

    x, y = data_reg()
    m = Ridge().fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_svc_rbf():
    from sklearn.svm import SVC

    x, y = data_clf(3, n=200)
    m = SVC(kernel="rbf", probability=True, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_svc_poly():
    from sklearn.svm import SVC

    x, y = data_clf(2, n=200)
    m = SVC(kernel="poly", degree=3).fit(x, y)
    return skl(m, x, options={id(m): {"zipmap": False}}), {"X": x[-N_TEST:]}


def fx_svr():
    from sklearn.svm import SVR

    x, y = data_reg(n=200)
    m = SVR(kernel="rbf", C=10.0).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_dtree_clf():
    from sklearn.tree import DecisionTreeClassifier

    x, y = data_clf(3)
    m = DecisionTreeClassifier(max_depth=6, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_dtree_reg():
    from sklearn.tree import DecisionTreeRegressor

    x, y = data_reg()
    m = DecisionTreeRegressor(max_depth=6, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_rf_clf(zipmap=True):
    from sklearn.ensemble import RandomForestClassifier

    x, y = data_clf(3)
    m = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=SEED).fit(x, y)
    opts = None if zipmap else {id(m): {"zipmap": False}}
    return skl(m, x, options=opts), {"X": x[-N_TEST:]}


def fx_rf_binary():
    from sklearn.ensemble import RandomForestClassifier

    x, y = data_clf(2)
    m = RandomForestClassifier(n_estimators=15, max_depth=5, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_rf_strlabels():
    from sklearn.ensemble import RandomForestClassifier

    x, y = data_clf(3)
    names = np.array(["low", "mid", "high"])[y]
    m = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=SEED).fit(x, names)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_rf_reg():
    from sklearn.ensemble import RandomForestRegressor

    x, y = data_reg()
    m = RandomForestRegressor(n_estimators=20, max_depth=6, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_et_clf():
    from sklearn.ensemble import ExtraTreesClassifier

    x, y = data_clf(3)
    m = ExtraTreesClassifier(n_estimators=20, max_depth=6, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_et_reg():
    from sklearn.ensemble import ExtraTreesRegressor

    x, y = data_reg()
    m = ExtraTreesRegressor(n_estimators=20, max_depth=6, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_gb_clf():
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = data_clf(3)
    m = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_gb_binary():
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = data_clf(2)
    m = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=SEED).fit(x, y)
    return skl(m, x, options={id(m): {"zipmap": False}}), {"X": x[-N_TEST:]}


def fx_gb_reg():
    from sklearn.ensemble import GradientBoostingRegressor

    x, y = data_reg()
    m = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_hgb_clf():
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, y = data_clf(3)
    x = x.copy()
    x[::7, 2] = np.nan
    m = HistGradientBoostingClassifier(max_iter=20, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_hgb_reg():
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y = data_reg()
    x = x.copy()
    x[::5, 1] = np.nan
    m = HistGradientBoostingRegressor(max_iter=20, random_state=SEED).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_knn():
    from sklearn.neighbors import KNeighborsClassifier

    x, y = data_clf(3, n=150)
    m = KNeighborsClassifier(n_neighbors=5).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_gnb():
    from sklearn.naive_bayes import GaussianNB

    x, y = data_clf(3)
    m = GaussianNB().fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_kmeans():
    from sklearn.cluster import KMeans

    x, _ = data_clf(3)
    m = KMeans(n_clusters=4, n_init=3, random_state=SEED).fit(x)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_pca():
    from sklearn.decomposition import PCA

    x, _ = data_clf(3)
    m = PCA(n_components=3).fit(x)
    return skl(m, x), {"X": x[-N_TEST:]}


def fx_scaler_normalizer():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Binarizer, MinMaxScaler, Normalizer

    x, _ = data_clf(3)
    m = make_pipeline(MinMaxScaler(), Normalizer(norm="l2"), Binarizer(threshold=0.2)).fit(x)
    return skl(m, x), {"X": x[-N_TEST:]}


def tokenizer_graph(name, text_shape, nodes):
    from onnx import TensorProto, helper

    outs = [helper.make_tensor_value_info(o, TensorProto.STRING, None) for _, o in nodes]
    made = [helper.make_node("Tokenizer", ["text"], [o], name=o, domain="com.microsoft", **attrs)
            for attrs, o in nodes]
    g = helper.make_graph(made, name, [helper.make_tensor_value_info("text", TensorProto.STRING, text_shape)],
                          outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def fx_tokenizer_2d():
    # com.microsoft Tokenizer in each of its modes on an [N, C] input.
    nodes = [
        (dict(mark=1, mincharnum=1, pad_value="<pad>", separators=[" ", "[,.;]+", "ab|abc"]), "separators"),
        (dict(mark=0, mincharnum=2, pad_value="#", tokenexp=r"\w+|[a-z]+-[a-z]+"), "tokenexp"),
        (dict(mark=1, mincharnum=1, pad_value="", separators=[""]), "chars"),
        (dict(mark=0, mincharnum=1, pad_value="#", tokenexp="."), "chars_exp"),
        (dict(mark=1, mincharnum=1, pad_value="#", tokenexp="[0-9]+"), "no_tokens"),
    ]
    text = np.array([["the quick-brown fox, jumps.", "abcabd xab;ab"],
                     ["", "héllo wörld; naïve-ish"],
                     ["a b  c", "x,,y..z ; w"]])
    return tokenizer_graph("tokenizer_2d", [None, 2], nodes), {"text": text}


def fx_tokenizer_1d():
    # [C] input; the default TfidfVectorizer-style expression, stricter minimum lengths.
    nodes = [
        (dict(mark=1, mincharnum=1, pad_value="#", tokenexp="[a-zA-Z0-9_]+"), "words"),
        (dict(mark=0, mincharnum=3, pad_value="_", tokenexp="[a-z]+"), "long_words"),
        (dict(mark=0, mincharnum=3, pad_value="_", separators=[r"\s+", "-"]), "long_pieces"),
        (dict(mark=0, mincharnum=1, pad_value="_", separators=[r"\bis\b"]), "split_is"),
    ]
    text = np.array(["This is a test-case, isn't it?", "   ", "island is big", "x1 y22 z333 ab-cd-efg"])
    return tokenizer_graph("tokenizer_1d", [None], nodes), {"text": text}


def fx_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx import convert_sklearn

    words = ["red", "green", "blue", "fast", "slow", "cat", "dog", "big", "small", "tree"]
    rng = np.random.default_rng(SEED)
    docs = [" ".join(rng.choice(words, size=rng.integers(3, 8))) for _ in range(200)]
    y = np.array([("cat" in d) + ("dog" in d) for d in docs])
    m = make_pipeline(TfidfVectorizer(lowercase=False), LogisticRegression(max_iter=500)).fit(docs, y)
    onx = convert_sklearn(m, initial_types=[("text", StringTensorType([None, 1]))],
                          options={id(m.steps[-1][1]): {"zipmap": False}})
    return onx, {"text": np.array(docs[-N_TEST:]).reshape(-1, 1)}


def fx_pipeline_columns():
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    rng = np.random.default_rng(SEED)
    n = 300
    color = rng.choice(["red", "green", "blue"], size=n)
    size = rng.choice(["S", "M", "L", "XL"], size=n)
    a = rng.normal(size=n).astype(np.float32)
    b = rng.normal(3.0, 2.0, size=n).astype(np.float32)
    a[::9] = np.nan
    y = ((a > 0) ^ (color == "red")).astype(int)
    df = pd.DataFrame({"color": color, "size": size, "a": a, "b": b})
    pre = ColumnTransformer([
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["color", "size"]),
        ("num", Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]),
         ["a", "b"]),
    ])
    m = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))]).fit(df, y)
    init = [("color", StringTensorType([None, 1])), ("size", StringTensorType([None, 1])),
            ("a", FloatTensorType([None, 1])), ("b", FloatTensorType([None, 1]))]
    onx = convert_sklearn(m, initial_types=init)
    t = df.iloc[-N_TEST:]
    color_t = t["color"].to_numpy().astype(str).copy()
    color_t[3] = "purple"  # unseen category
    return onx, {
        "color": color_t.reshape(-1, 1),
        "size": t["size"].to_numpy().astype(str).reshape(-1, 1),
        "a": t["a"].to_numpy().astype(np.float32).reshape(-1, 1),
        "b": t["b"].to_numpy().astype(np.float32).reshape(-1, 1),
    }


def fx_pipeline_tree():
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.ensemble import RandomForestClassifier

    x, y = data_clf(2)
    x = x.copy()
    x[::6, 0] = np.nan
    m = make_pipeline(SimpleImputer(), StandardScaler(),
                      RandomForestClassifier(n_estimators=10, max_depth=5, random_state=SEED)).fit(x, y)
    return skl(m, x), {"X": x[-N_TEST:]}


def xgb_model(kind):
    import xgboost as xgb
    from onnxmltools import convert_xgboost

    if kind == "reg":
        x, y = data_reg()
        m = xgb.XGBRegressor(n_estimators=30, max_depth=4, random_state=SEED).fit(x, y)
    else:
        x, y = data_clf(2 if kind == "binary" else 3)
        m = xgb.XGBClassifier(n_estimators=30, max_depth=4, random_state=SEED).fit(x, y)
    x = x.copy()
    x[::8, 3] = np.nan
    onx = convert_xgboost(m, initial_types=float_input(x.shape[1]), target_opset=15)
    return onx, {"input": x[-N_TEST:]}


def lgbm_model(kind, zipmap=True):
    import lightgbm as lgb
    from onnxmltools import convert_lightgbm

    if kind == "reg":
        x, y = data_reg()
        m = lgb.LGBMRegressor(n_estimators=30, num_leaves=15, random_state=SEED, verbose=-1).fit(x, y)
    else:
        x, y = data_clf(2 if kind == "binary" else 3)
        m = lgb.LGBMClassifier(n_estimators=30, num_leaves=15, random_state=SEED, verbose=-1).fit(x, y)
    x = x.copy()
    x[::8, 3] = np.nan
    kw = {} if kind == "reg" else {"zipmap": zipmap}
    onx = convert_lightgbm(m, initial_types=float_input(x.shape[1]), target_opset=15, **kw)
    return onx, {"input": x[-N_TEST:]}


FIXTURES = {
    "logreg_binary": lambda: fx_logreg_binary(True),
    "logreg_binary_nozipmap": lambda: fx_logreg_binary(False),
    "logreg_multi": lambda: fx_logreg_multi(True),
    "logreg_multi_nozipmap": lambda: fx_logreg_multi(False),
    "logreg_strlabels": fx_logreg_strlabels,
    "linear_svc": fx_linear_svc,
    "ridge": fx_linear_regression,
    "svc_rbf": fx_svc_rbf,
    "svc_poly": fx_svc_poly,
    "svr_rbf": fx_svr,
    "dtree_clf": fx_dtree_clf,
    "dtree_reg": fx_dtree_reg,
    "rf_clf": lambda: fx_rf_clf(True),
    "rf_clf_nozipmap": lambda: fx_rf_clf(False),
    "rf_binary": fx_rf_binary,
    "rf_strlabels": fx_rf_strlabels,
    "rf_reg": fx_rf_reg,
    "et_clf": fx_et_clf,
    "et_reg": fx_et_reg,
    "gb_clf": fx_gb_clf,
    "gb_binary": fx_gb_binary,
    "gb_reg": fx_gb_reg,
    "hgb_clf": fx_hgb_clf,
    "hgb_reg": fx_hgb_reg,
    "knn_clf": fx_knn,
    "gaussian_nb": fx_gnb,
    "kmeans": fx_kmeans,
    "pca": fx_pca,
    "scaler_normalizer_binarizer": fx_scaler_normalizer,
    "tfidf_logreg": fx_tfidf,
    "tokenizer_2d": fx_tokenizer_2d,
    "tokenizer_1d": fx_tokenizer_1d,
    "pipeline_columns": fx_pipeline_columns,
    "pipeline_impute_rf": fx_pipeline_tree,
    "xgb_binary": lambda: xgb_model("binary"),
    "xgb_multi": lambda: xgb_model("multi"),
    "xgb_reg": lambda: xgb_model("reg"),
    "lgbm_binary": lambda: lgbm_model("binary"),
    "lgbm_multi": lambda: lgbm_model("multi"),
    "lgbm_multi_nozipmap": lambda: lgbm_model("multi", zipmap=False),
    "lgbm_reg": lambda: lgbm_model("reg"),
}


def seq_map_json(value):
    items = []
    key = "int"
    for d in value:
        ks = list(d.keys())
        if ks and isinstance(ks[0], str):
            key = "str"
        items.append({str(k): float(v) for k, v in d.items()})
    return items, key


def export(name, build):
    model, inputs = build()
    data = model.SerializeToString()
    if len(data) > MAX_BYTES:
        raise RuntimeError(f"{name}: model is {len(data)} bytes (> 2 MB)")
    out_dir = os.path.join(ROOT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "model.onnx"), "wb") as f:
        f.write(data)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    feeds = {}
    entry = {"name": name, "inputs": [], "outputs": [],
             "ops": sorted({f"{n.domain or 'ai.onnx'}:{n.op_type}" for n in model.graph.node})}
    for k, i in enumerate(sess.get_inputs()):
        arr = inputs[i.name]
        feeds[i.name] = arr
        fname = f"input_{k}.npy"
        np.save(os.path.join(out_dir, fname), arr)
        entry["inputs"].append({"name": i.name, "file": fname})
    results = sess.run(None, feeds)
    for k, (o, r) in enumerate(zip(sess.get_outputs(), results)):
        if isinstance(r, list):
            items, key = seq_map_json(r)
            fname = f"output_{k}.json"
            with open(os.path.join(out_dir, fname), "w") as f:
                json.dump(items, f)
            entry["outputs"].append({"name": o.name, "file": fname, "kind": "seq_map", "key": key})
        else:
            r = np.asarray(r)
            if r.dtype == object:
                r = r.astype(str)
            fname = f"output_{k}.npy"
            np.save(os.path.join(out_dir, fname), r)
            entry["outputs"].append({"name": o.name, "file": fname, "kind": "tensor"})
    return entry


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    os.makedirs(ROOT, exist_ok=True)
    manifest_path = os.path.join(ROOT, "MANIFEST.json")
    old = {}
    if args.only and os.path.exists(manifest_path):
        with open(manifest_path) as f:
            old = {e["name"]: e for e in json.load(f)["fixtures"]}
    failures = {}
    for name, build in FIXTURES.items():
        if args.only and name not in args.only:
            continue
        try:
            old[name] = export(name, build)
            print(f"ok    {name}")
        except Exception as e:  # noqa: BLE001
            failures[name] = f"{type(e).__name__}: {e}"
            print(f"FAIL  {name}: {failures[name]}", file=sys.stderr)
    import sklearn, skl2onnx, onnxmltools, xgboost, lightgbm  # noqa: E401
    manifest = {
        "tolerance": {"rtol": 1e-3, "atol": 1e-5},
        "versions": {"onnx": onnx.__version__, "onnxruntime": ort.__version__,
                     "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
                     "onnxmltools": onnxmltools.__version__, "xgboost": xgboost.__version__,
                     "lightgbm": lightgbm.__version__, "numpy": np.__version__},
        "fixtures": [old[k] for k in FIXTURES if k in old],
        "export_failures": failures,
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
