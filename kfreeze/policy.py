"""Which ops a graph may run: an explicit allowlist of inference ops.

A GraphDef is a program. A TF1 ``graphs:`` entry, or a Keras model with a Lambda
layer, can hold ops that write or read files, run Python (``PyFunc``), open
datasets or save state; TensorFlow runs them when ``freeze`` restores the
variables or ``verify`` evaluates the outputs. So before any ``Session.run`` the
ops the outputs depend on (through data and control edges, and inside every
function they call) must all be in ``ALLOWED``. ``trust_code: true`` in the
model's entry switches the check off.

Hand-written, because TensorFlow has no notion of a "safe" op: the list was
derived from the ops of keras.applications models (MobileNet V2/V3, ResNet,
EfficientNet V1/V2, DenseNet, Inception, NASNet, ConvNeXt, VGG, Xception),
Keras RNN loops (LSTM/GRU/SimpleRNN/ConvLSTM, TF1 while loops and TensorArrays),
attention, normalization and preprocessing layers, and TF1 graphs (the example's
input pipeline up to its cut). Random ops stay allowed: dropout and noise layers
use them, and ``optimize`` removes them.
"""

from __future__ import annotations

from typing import Iterable

from kfreeze.errors import KfreezeError

_MATH = """
Abs Acos Acosh Add AddN AddV2 All Any ApproximateEqual ArgMax ArgMin Asin Asinh Atan Atan2 Atanh BatchMatMul
BatchMatMulV2 BatchMatMulV3 Betainc Bucketize Cast Ceil ClipByValue Complex ComplexAbs Conj Cos Cosh Cross Cumprod
Cumsum CumulativeLogsumexp Digamma Div DivNoNan Einsum Equal Erf Erfc Erfinv Exp Expm1 Floor FloorDiv FloorMod
Greater GreaterEqual Igamma Igammac Imag Inv InvGrad IsFinite IsInf IsNan L2Loss LeftShift Less LessEqual Lgamma
LinSpace Log Log1p LogicalAnd LogicalNot LogicalOr MatMul Max Maximum Mean Min Minimum Mod Mul MulNoNan Ndtri Neg
NextAfter NotEqual Polygamma Pow Prod Range Real RealDiv Reciprocal ReciprocalGrad RightShift Rint Round Rsqrt
RsqrtGrad SegmentMax SegmentMean SegmentMin SegmentProd SegmentSum Select SelectV2 Sigmoid SigmoidGrad Sign Sin
Sinh Softplus Softsign SparseSegmentMean SparseSegmentSqrtN SparseSegmentSum Sqrt SqrtGrad Square SquaredDifference
Sub Sum Tan Tanh TanhGrad TruncateDiv TruncateMod UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd
UnsortedSegmentSum Xdivy Xlog1py Xlogy Zeta BitwiseAnd BitwiseOr BitwiseXor Invert PopulationCount
EuclideanNorm MatrixBandPart MatrixDiag MatrixDiagV2 MatrixDiagV3 MatrixDiagPart MatrixDiagPartV2
MatrixDiagPartV3 MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3 MatrixInverse MatrixDeterminant Cholesky Qr Svd
SelfAdjointEigV2 MatrixTriangularSolve MatrixSolve LogMatrixDeterminant BatchMatrixBandPart FFT IFFT FFT2D IFFT2D
RFFT IRFFT RFFT2D IRFFT2D ComplexAbs Angle HistogramFixedWidth
"""
_NN = """
AvgPool AvgPool3D BiasAdd BiasAddV1 Conv2D Conv2DBackpropInput Conv3D Conv3DBackpropInputV2 Conv1D Conv
DepthwiseConv2dNative DepthwiseConv2dNativeBackpropInput Dilation2D Elu FusedBatchNorm FusedBatchNormV2
FusedBatchNormV3 FusedPadConv2D FusedResizeAndPadConv2D InTopK InTopKV2 LRN LeakyRelu LogSoftmax MaxPool
MaxPool3D MaxPoolV2 MaxPoolWithArgmax NthElement Relu Relu6 Selu Softmax TopKV2 TopK BatchNormWithGlobalNormalization
DataFormatDimMap DataFormatVecPermute Gelu QuantizeAndDequantizeV2 QuantizeAndDequantizeV3 QuantizeAndDequantizeV4
FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsPerChannel SoftmaxCrossEntropyWithLogits
SparseSoftmaxCrossEntropyWithLogits CTCGreedyDecoder
"""
_ARRAY = """
BatchToSpace BatchToSpaceND BroadcastArgs BroadcastGradientArgs BroadcastTo CheckNumerics CheckNumericsV2 Concat
ConcatOffset ConcatV2 Const DepthToSpace Diag DiagPart DynamicPartition DynamicStitch EditDistance Empty
EnsureShape ExpandDims ExtractImagePatches ExtractVolumePatches Fill Gather GatherNd GatherV2 Identity IdentityN
InvertPermutation ListDiff LowerBound MirrorPad MirrorPadGrad OneHot OnesLike Pack Pad PadV2 ParallelConcat
ParallelDynamicStitch Placeholder PlaceholderV2 PlaceholderWithDefault PreventGradient Rank Reshape
ResourceGather ResourceGatherNd Reverse ReverseSequence ReverseV2 Roll ScatterNd ScatterNdNonAliasingAdd Shape
ShapeN Size Slice Snapshot SpaceToBatch SpaceToBatchND SpaceToDepth Split SplitV Squeeze StopGradient
StridedSlice StridedSliceGrad Tile TileGrad Transpose ConjugateTranspose Unique UniqueV2 UniqueWithCounts Unpack
UnravelIndex UpperBound Where ZerosLike TensorScatterAdd TensorScatterMax TensorScatterMin TensorScatterSub
TensorScatterUpdate Bitcast Cast SearchSorted Sort DeepCopy InplaceAdd InplaceSub InplaceUpdate
GuaranteeConst Assert NoOp
"""
_IMAGE = """
AdjustContrast AdjustContrastv2 AdjustHue AdjustSaturation CombinedNonMaxSuppression CropAndResize
DrawBoundingBoxes DrawBoundingBoxesV2 HSVToRGB NonMaxSuppression NonMaxSuppressionV2 NonMaxSuppressionV3
NonMaxSuppressionV4 NonMaxSuppressionV5 NonMaxSuppressionWithOverlaps RGBToHSV ResizeArea ResizeBicubic
ResizeBilinear ResizeNearestNeighbor ScaleAndTranslate ImageProjectiveTransformV2 ImageProjectiveTransformV3
DecodeJpeg DecodePng DecodeBmp DecodeGif DecodeImage DecodeAndCropJpeg DecodeRaw DecodeCSV DecodeBase64
EncodeJpeg EncodePng ExtractJpegShape
"""
# Keras 3 and TF2 control flow (functional ops call functions, checked too) and TF1 while loops.
_CONTROL = """
Enter Exit LoopCond Merge NextIteration Switch RefEnter RefExit RefMerge RefNextIteration RefSwitch ControlTrigger
If StatelessIf While StatelessWhile Case StatelessCase PartitionedCall StatefulPartitionedCall
TensorArrayV3 TensorArrayReadV3 TensorArrayWriteV3 TensorArrayScatterV3 TensorArrayGatherV3 TensorArraySizeV3
TensorArrayConcatV3 TensorArraySplitV3 TensorArrayCloseV3 TensorArrayGradV3
TensorListConcatV2 TensorListElementShape TensorListFromTensor TensorListGather TensorListGetItem TensorListLength
TensorListPopBack TensorListPushBack TensorListReserve TensorListResize TensorListScatterIntoExistingList
TensorListScatterV2 TensorListSetItem TensorListSplit TensorListStack TensorListConcatLists EmptyTensorList
TensorListScatter TensorListConcat
"""
# Variables and their initializers: they live in memory (the Saver that reads files is refused).
_STATE = """
VariableV2 Variable VarHandleOp ReadVariableOp VarIsInitializedOp IsVariableInitialized Assign AssignAdd AssignSub
AssignVariableOp AssignAddVariableOp AssignSubVariableOp DestroyResourceOp DestroyTemporaryVariable
TemporaryVariable HashTable HashTableV2 MutableHashTable MutableHashTableV2 MutableDenseHashTableV2
LookupTableFind LookupTableFindV2 LookupTableImport LookupTableImportV2 LookupTableInsert LookupTableInsertV2
LookupTableSize LookupTableSizeV2 LookupTableExport LookupTableExportV2 InitializeTable InitializeTableV2
AnonymousHashTable
"""
# Dropout, noise and random augmentation layers at training time; optimize removes them.
_RANDOM = """
RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal RandomShuffle Multinomial RandomGamma
RandomPoisson RandomPoissonV2 StatelessRandomUniform StatelessRandomUniformV2 StatelessRandomUniformInt
StatelessRandomUniformIntV2 StatelessRandomUniformFullInt StatelessRandomUniformFullIntV2 StatelessRandomNormal
StatelessRandomNormalV2 StatelessTruncatedNormal StatelessTruncatedNormalV2 StatelessMultinomial
StatelessRandomGetKeyCounter StatelessRandomGetKeyCounterAlg StatelessRandomGetAlg
StatelessRandomBinomial StatelessRandomGammaV2 StatelessRandomGammaV3 StatelessRandomPoisson
StatelessParameterizedTruncatedNormal ParameterizedTruncatedNormal RandomUniformIntV2
"""
# Text preprocessing (StringLookup, TextVectorization, Hashing): pure string functions.
_STRING = """
AsString StringFormat StringJoin StringLength StringLower StringUpper StringSplit StringSplitV2 StringStrip
StringToHashBucket StringToHashBucketFast StringToHashBucketStrong StringToNumber Substr RegexReplace
StaticRegexReplace RegexFullMatch StaticRegexFullMatch UnicodeDecode UnicodeDecodeWithOffsets UnicodeEncode
UnicodeScript UnicodeTranscode StringNGrams Fingerprint ReduceJoin RaggedTensorToTensor RaggedTensorToSparse
RaggedTensorFromVariant RaggedTensorToVariant RaggedGather RaggedRange RaggedCross RaggedBincount
SparseToDense SparseTensorDenseMatMul SparseReshape SparseFillEmptyRows SparseReduceSum SparseCross
SparseCrossV2 SparseCrossHashed SparseBincount DenseBincount Bincount SparseTensorDenseAdd SparseAdd SparseConcat
SparseSlice SparseReorder SparseSegmentMeanWithNumSegments SparseSegmentSumWithNumSegments
SparseSegmentSqrtNWithNumSegments
"""

ALLOWED: frozenset[str] = frozenset(" ".join((_MATH, _NN, _ARRAY, _IMAGE, _CONTROL, _STATE, _RANDOM, _STRING)).split())

# Why an op outside the list is refused, for the ones an attacker reaches for first.
_REASONS = (
    (("WriteFile", "ReadFile", "MatchingFiles", "Save", "Restore", "MergeV2Checkpoints", "ShardedFilename",
      "ShardedFilespec", "Reader", "PrintV2", "Print", "WholeFile", "SummaryWriter", "WriteSummary",
      "WriteScalarSummary", "WriteImageSummary", "ImportEvent", "FlushSummaryWriter", "CreateSummaryFileWriter",
      "DebugIdentity"), "touches files"),
    (("PyFunc", "EagerPyFunc", "PyFuncStateless", "Py"), "runs Python code"),
    (("Dataset", "Iterator", "Queue", "Stage", "Barrier", "Recv", "Send", "Rpc", "Collective"),
     "reads an input pipeline or talks to another process"),
)


def reason(op: str) -> str:
    for needles, why in _REASONS:
        if any(n in op for n in needles):
            return why
    return "is not an inference op kfreeze knows"


def _tensor(name: str) -> tuple[str, str]:
    """('node', 'node:k') for an input reference; control inputs return their node and ''."""
    if name.startswith("^"):
        return name[1:], ""
    node, _, port = name.partition(":")
    return node, f"{node}:{port or '0'}"


def _functions_called(node, library: dict) -> list[str]:
    """Every function ``node`` may call: its op, and each function value in its attrs at any depth
    (``f=outer[inner_fn=evil]`` binds 'evil' to a placeholder that 'outer' calls)."""
    called = [node.op] if node.op in library else []
    stack = list(node.attr.values())
    while stack:
        value = stack.pop()
        if value.HasField("func"):
            called.append(value.func.name)
            stack += value.func.attr.values()
        elif value.HasField("list"):
            for func in value.list.func:
                called.append(func.name)
                stack += func.attr.values()
    return called


def needed_ops(graph, outputs: Iterable[str], fed: Iterable[str] = (), also: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(op, node) for every node that running ``outputs`` with ``fed`` tensors fed can execute.

    Fed tensors are not computed, so the walk stops there: that is how a TF1
    input pipeline upstream of the cut stays out. ``also`` adds nodes run
    besides the outputs (the variables a Saver restores). Function bodies are
    taken whole: a call runs whatever its function holds.
    """
    by_name = {n.name: n for n in graph.node}
    library = {f.signature.name: f for f in graph.library.function}
    fed = {_tensor(t)[1] for t in fed}
    seen: set[str] = set()
    stack = [_tensor(o)[0] for o in outputs] + list(also)
    found: list[tuple[str, str]] = []
    functions: list[str] = []
    while stack:
        name = stack.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        node = by_name[name]
        found.append((node.op, node.name))
        functions += _functions_called(node, library)
        for inp in node.input:
            src, tensor = _tensor(inp)
            if tensor and tensor in fed:
                continue
            stack.append(src)
    done: set[str] = set()
    while functions:
        fname = functions.pop()
        if fname in done or fname not in library:
            continue
        done.add(fname)
        for node in library[fname].node_def:
            found.append((node.op, f"{fname}/{node.name}"))
            functions += _functions_called(node, library)
    return found


def check(graph, outputs: Iterable[str], fed: Iterable[str] = (), where: str = "graph",
          param=None, trust_code: bool = False, variables: bool = True) -> None:
    """Refuse a graph whose outputs depend on an op outside ``ALLOWED``, naming the op and node.

    ``variables`` also walks from every variable of the graph: restoring them
    (freeze, and verify's checkpoint reference) runs their control inputs too.
    ``param``: the model's ``params.Origin``, which says how the fix sets trust_code.

    Sizes are checked whatever ``trust_code`` says (kfreeze.bounds): an op whose output, computed from
    constants and the placeholders' shapes, is larger than one tensor may be is refused, before
    anything imports, folds or runs the graph.
    """
    from kfreeze import bounds
    bounds.check(graph, where)
    if trust_code:
        return
    also = [n.name for n in graph.node if n.op in ("VariableV2", "Variable", "VarHandleOp")] if variables else []
    bad = sorted({(op, node) for op, node in needed_ops(graph, outputs, fed, also) if op not in ALLOWED})
    if bad:
        trust = param.setting("trust_code", "true") if param is not None else "set trust_code: true for it"
        op, node = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise KfreezeError(where, f"node '{node}' is a {op} op, which {reason(op)}; kfreeze runs only inference "
                           f"ops{more}", f"remove it from the graph, or cut it off with inputs/outputs; if you trust "
                           f"this graph, {trust}")
