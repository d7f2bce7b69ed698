"""A small ONNX graph builder: unique names, constants, nodes, and splicing whole models in.

Every compiled model is one graph with a double input ``X`` (so tree thresholds and neighbour
distances see the caller's float64 values) and float32 arithmetic elsewhere. Member models made
by other converters (skl2onnx, the torch exporter, a user's ONNX file) are spliced in with their
names prefixed, after converting them to the builder's opset.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["Graph", "OPSET", "ML_OPSET"]

OPSET = 18
ML_OPSET = 3


class Graph:
    """Nodes and initializers of one graph; ``child()`` gives an If-branch body sharing the names."""

    def __init__(self, n_features: int, *, parent: Graph | None = None, x: str = "X"):
        self.n_features = n_features
        self.parent = parent
        self.nodes: list = []
        self._inits: list = [] if parent is None else parent._inits  # outer-scope values reach subgraphs
        self._count = [0] if parent is None else parent._count
        self.x = x  # double [N, F]
        self._xf: str | None = None
        self.opsets: dict[str, int] = {"": OPSET, "ai.onnx.ml": ML_OPSET} if parent is None else parent.opsets
        self.python_inputs: list[tuple[str, int]] = [] if parent is None else parent.python_inputs
        self.ctx = None if parent is None else parent.ctx  # the compile run: record and fallbacks
        self.rows: str | None = None  # in an If branch: the root rows this body sees (int64 [M])

    # -- names and values ------------------------------------------------------------------------
    def name(self, hint: str) -> str:
        self._count[0] += 1
        return f"{hint}_{self._count[0]}"

    def const(self, value, hint: str = "c", dtype=None) -> str:
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self._inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, *, n_out: int = 1,
           domain: str = "", **attrs):
        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.name("n_" + op_type),
                                           domain=domain or None, **attrs))
        return outs[0] if n_out == 1 else outs

    def x_float(self) -> str:
        """``X`` as float32, cast once per graph body."""
        if self._xf is None:
            self._xf = self.op("Cast", [self.x], "xf", to=TensorProto.FLOAT)
        return self._xf

    def child(self, x: str, rows: str) -> Graph:
        """An If-branch body reading ``x``, the rows ``rows`` (indices into this graph's rows)."""
        sub = Graph(self.n_features, parent=self, x=x)
        sub.rows = rows if self.rows is None else self.op("Gather", [self.rows, rows], "rows", axis=0)
        return sub

    def python_input(self, width: int, hint: str) -> str:
        """A graph input fed by a member that stays in Python (its outputs, float32 [N, width])."""
        root = self
        while root.parent is not None:
            root = root.parent
        name = root.name("py_" + hint)
        self.python_inputs.append((name, int(width)))
        return name if self.rows is None else self.op("Gather", [name, self.rows], "py_rows", axis=0)

    # -- splicing --------------------------------------------------------------------------------
    def splice(self, model: onnx.ModelProto, feeds: dict[str, str] | list[str], hint: str) -> list[str]:
        """Copy ``model``'s nodes in (names prefixed); its inputs read ``feeds``; returns its outputs' names."""
        model = _to_opset(model)
        for imp in model.opset_import:
            dom = imp.domain or ""
            if dom not in ("", "ai.onnx.ml"):
                self.opsets[dom] = max(self.opsets.get(dom, 0), imp.version)
        g = model.graph
        init_names = {i.name for i in g.initializer}
        real_inputs = [i.name for i in g.input if i.name not in init_names]
        if isinstance(feeds, list):
            feeds = dict(zip(real_inputs, feeds))
        missing = [n for n in real_inputs if n not in feeds]
        if missing:
            raise ValueError(f"no feed for inputs {missing} of the spliced {hint} graph")
        prefix = self.name(hint) + "/"
        rename = dict(feeds)

        def new(n: str) -> str:
            if n == "":
                return n
            if n not in rename:
                rename[n] = prefix + n
            return rename[n]

        for init in g.initializer:
            t = onnx.TensorProto()
            t.CopyFrom(init)
            t.name = new(init.name)
            self._inits.append(t)
        for node in g.node:
            n = onnx.NodeProto()
            n.CopyFrom(node)
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
                raise ValueError(f"the {hint} graph has control-flow subgraphs, which splicing does not rename")
            n.name = prefix + (node.name or node.op_type)
            del n.input[:]
            n.input.extend(new(i) for i in node.input)
            del n.output[:]
            n.output.extend(new(o) for o in node.output)
            self.nodes.append(n)
        return [rename[o.name] for o in g.output]

    # -- the finished model ----------------------------------------------------------------------
    def body(self, outputs: list[str], name: str) -> onnx.GraphProto:
        """An If-branch body: no inputs, float outputs of unknown shape."""
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        return helper.make_graph(self.nodes, name, [], outs)

    def model(self, proba: str, n_classes: int) -> onnx.ModelProto:
        inputs = [helper.make_tensor_value_info(self.x, TensorProto.DOUBLE, ["N", self.n_features])]
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", w]) for n, w in self.python_inputs]
        out = [helper.make_tensor_value_info(proba, TensorProto.FLOAT, ["N", n_classes])]
        graph = helper.make_graph(self.nodes, "slimstack_compiled", inputs, out, initializer=self._inits)
        opsets = [helper.make_opsetid(d, v) for d, v in self.opsets.items()]
        m = helper.make_model(graph, opset_imports=opsets, producer_name="slimstack.compile")
        m.ir_version = min(m.ir_version, 10)
        return m


def _to_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """Bring a member graph to the builder's default-domain opset (ops changed their inputs across opsets)."""
    version = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), OPSET)
    if version == OPSET:
        return model
    from onnx import version_converter

    return version_converter.convert_version(model, OPSET)
