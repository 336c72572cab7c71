"""Which class of work an op is, by the name its backend gives it.

One table for the counter, the profiler and the predictor, so a profiled
``aten::addmm`` and a counted ``aten.addmm.default`` land in the same class.
Names not in the tables are ``unknown``: the caller lists them.
"""

from __future__ import annotations

import re

from .schema import OpClass

__all__ = ["classify_torch", "classify_onnx", "torch_base_name"]

_TORCH: dict[str, OpClass] = {}
for _names, _cls in (
    ("mm addmm bmm baddbmm matmul linear _addmm_activation mkldnn_linear _mkl_linear addmv mv dot "
     "einsum _linear_pointwise mkldnn_linear_pointwise _weight_int8pack_mm _int_mm addbmm", "matmul"),
    ("convolution _convolution conv1d conv2d conv3d mkldnn_convolution cudnn_convolution "
     "_convolution_pointwise conv_transpose1d conv_transpose2d conv_transpose3d _nnpack_spatial_convolution "
     "slow_conv2d slow_conv2d_forward thnn_conv2d", "conv"),
    ("scaled_dot_product_attention _scaled_dot_product_flash_attention "
     "_scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_efficient_attention "
     "_scaled_dot_product_cudnn_attention _scaled_dot_product_attention_math _flash_attention_forward "
     "_efficient_attention_forward _native_multi_head_attention _transformer_encoder_layer_fwd", "attention"),
    ("lstm gru rnn_tanh rnn_relu mkldnn_rnn_layer _thnn_fused_lstm_cell lstm_cell gru_cell "
     "_cudnn_rnn", "recurrent"),
    ("layer_norm native_layer_norm batch_norm native_batch_norm _native_batch_norm_legit "
     "_native_batch_norm_legit_no_training _batch_norm_impl_index group_norm native_group_norm "
     "instance_norm rms_norm _fused_rms_norm cudnn_batch_norm miopen_batch_norm", "normalization"),
    ("softmax _softmax log_softmax _log_softmax sum mean amax amin max min prod argmax argmin "
     "max_pool1d max_pool2d max_pool3d max_pool2d_with_indices avg_pool1d avg_pool2d avg_pool3d "
     "adaptive_avg_pool1d adaptive_avg_pool2d _adaptive_avg_pool2d adaptive_max_pool2d mkldnn_max_pool2d "
     "var std var_mean norm linalg_vector_norm cumsum topk sort logsumexp any all nansum cumprod", "reduction"),
    ("view _unsafe_view reshape permute transpose t contiguous clone copy_ _to_copy to copy expand "
     "unsqueeze squeeze select slice cat stack split split_with_sizes chunk unbind embedding index_select "
     "gather index flatten narrow as_strided detach alias empty empty_like zeros zeros_like ones ones_like "
     "full full_like arange new_empty new_zeros lift_fresh _reshape_alias repeat pad constant_pad_nd "
     "expand_as unflatten view_as slice_scatter select_scatter masked_fill_ fill_ zero_ "
     "_local_scalar_dense item scalar_tensor lift_fresh_copy new_ones new_full index_put scatter scatter_add "
     "tril triu roll flip repeat_interleave movedim swapaxes embedding_bag pixel_shuffle channel_shuffle "
     "upsample_nearest2d upsample_bilinear2d _upsample_nearest_exact2d view_copy permute_copy "
     "transpose_copy expand_copy unsqueeze_copy squeeze_copy t_copy alias_copy "
     "resolve_conj resolve_neg", "data_movement"),
    ("add sub mul div relu relu_ gelu silu sigmoid tanh exp log sqrt rsqrt pow neg abs clamp clamp_min "
     "clamp_max hardtanh hardswish hardsigmoid leaky_relu elu erf where masked_fill add_ mul_ div_ sub_ "
     "threshold maximum minimum reciprocal sin cos rsub eq ne lt le gt ge logical_not bitwise_not "
     "_softmax_backward_data dropout native_dropout mish softplus addcmul addcdiv lerp floor ceil round "
     "sign square log1p expm1 log2 logical_and logical_or logical_xor bitwise_and bitwise_or remainder fmod "
     "floor_divide nan_to_num isnan isinf glu logit log_sigmoid prelu _prelu_kernel", "elementwise"),
):
    for _n in _names.split():
        _TORCH[_n] = _cls  # type: ignore[assignment]

_ONNX: dict[str, OpClass] = {}
for _names, _cls in (
    ("MatMul Gemm MatMulInteger QLinearMatMul FusedMatMul MatMulNBits DynamicQuantizeMatMul "
     "MatMulIntegerToFloat QGemm FusedGemm Einsum", "matmul"),
    ("Conv ConvInteger QLinearConv ConvTranspose FusedConv NhwcConv", "conv"),
    ("Attention MultiHeadAttention GroupQueryAttention", "attention"),
    ("LSTM GRU RNN DynamicQuantizeLSTM", "recurrent"),
    ("LayerNormalization BatchNormalization InstanceNormalization GroupNormalization "
     "SkipLayerNormalization SimplifiedLayerNormalization SkipSimplifiedLayerNormalization "
     "EmbedLayerNormalization RMSNormalization LpNormalization", "normalization"),
    ("Softmax LogSoftmax ReduceSum ReduceMean ReduceMax ReduceMin ReduceProd ReduceL2 ReduceL1 "
     "ReduceSumSquare ReduceLogSumExp ArgMax ArgMin MaxPool AveragePool GlobalAveragePool GlobalMaxPool "
     "LpPool TopK CumSum GlobalLpPool Hardmax BiasSoftmax", "reduction"),
    ("Reshape Transpose Flatten Squeeze Unsqueeze Concat Split Slice Gather GatherElements GatherND "
     "Identity Cast Shape Expand Tile Pad Constant ConstantOfShape Range Size ScatterND ScatterElements "
     "DepthToSpace SpaceToDepth Resize Upsample NonZero OneHot Trilu CastLike DequantizeLinear "
     "QuantizeLinear DynamicQuantizeLinear Compress ReverseSequence GatherBlockQuantized "
     "MemcpyToHost MemcpyFromHost", "data_movement"),
    ("Add Sub Mul Div Relu Gelu FastGelu BiasGelu QuickGelu Sigmoid Tanh Exp Log Sqrt Pow Neg Abs Clip Erf "
     "Where Equal Less Greater LessOrEqual GreaterOrEqual Not And Or Max Min Sum Mean LeakyRelu Elu "
     "HardSigmoid HardSwish Softplus Mish Reciprocal Floor Ceil Round Sign Sin Cos Dropout PRelu "
     "BiasAdd Celu Selu ThresholdedRelu IsNaN IsInf Mod BitShift Xor RotaryEmbedding Softsign", "elementwise"),
):
    for _n in _names.split():
        _ONNX[_n] = _cls  # type: ignore[assignment]


def torch_base_name(name: str) -> str:
    """``aten::addmm`` / ``aten.addmm.default`` / ``torch.ops.aten.addmm`` → ``addmm``."""
    text = name.strip()
    for prefix in ("torch.ops.", "aten::", "aten.", "mkldnn::", "quantized::", "prims::", "prims."):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = re.split(r"[.:]", text)[0] if text else text
    return text


def classify_torch(name: str) -> OpClass:
    """Class of a torch op name as the profiler or the dispatcher gives it."""
    base = torch_base_name(name)
    if base in _TORCH:
        return _TORCH[base]
    stripped = base.rstrip("_")  # in-place variants: add_ → add
    return _TORCH.get(stripped, "unknown")


def classify_onnx(op_type: str, *, depthwise: bool = False) -> OpClass:
    """Class of an ONNX node type (ONNX Runtime's fused types included).
    ``depthwise``: a Conv whose groups equal its input channels."""
    cls = _ONNX.get(op_type, "unknown")
    if cls == "conv" and depthwise:
        return "depthwise_conv"
    return cls
