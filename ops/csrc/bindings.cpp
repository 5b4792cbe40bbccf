// Python bindings. Arguments are validated (with messages naming them) by ops/_checks.py before
// they reach here; the TORCH_CHECKs below are a last line of defence against memory errors.
#include <ATen/record_function.h>

#include "kernels.h"

// Each entry point records itself for torch.profiler: eager calls reach it through a plain
// autograd.Function (ops/backend.py, calls_kernels_directly), which the dispatcher never sees.
// The record costs a flag check when no profiler runs.
#define PERCEPTION_OPS_RECORD(name) RECORD_FUNCTION(name, std::vector<c10::IValue>())

namespace perception_ops {
namespace {

void check_same(const torch::Tensor& ref, const torch::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.device() == ref.device(), name, " must be on ", ref.device(), ", got ", t.device());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, " must have dtype ", ref.scalar_type(),
              ", got ", t.scalar_type());
}

DCNv3Geometry make_geometry(const torch::Tensor& input, const torch::Tensor& offset, int64_t kernel_h,
                            int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w,
                            int64_t dilation_h, int64_t dilation_w, int64_t group, int64_t group_channels,
                            double offset_scale, bool remove_center, bool mask_softmax) {
  TORCH_CHECK(input.dim() == 4 && offset.dim() == 4, "dcnv3: input and offset must be 4-D (N, H, W, C)");
  const int64_t points = kernel_h * kernel_w - (remove_center ? 1 : 0);
  return {input.size(0), input.size(1), input.size(2), offset.size(1), offset.size(2),
          kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w,
          group, group_channels, points, offset_scale, remove_center, mask_softmax};
}

torch::Tensor dcnv3_forward(const torch::Tensor& input, const torch::Tensor& offset, const torch::Tensor& mask,
                            int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w, int64_t pad_h,
                            int64_t pad_w, int64_t dilation_h, int64_t dilation_w, int64_t group,
                            int64_t group_channels, double offset_scale, bool remove_center, bool mask_softmax) {
  PERCEPTION_OPS_RECORD("perception_ops::dcnv3_forward");
  check_same(input, input, "input");
  check_same(input, offset, "offset");
  check_same(input, mask, "mask");
  const auto geo = make_geometry(input, offset, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                 dilation_h, dilation_w, group, group_channels, offset_scale, remove_center,
                                 mask_softmax);
#ifdef WITH_CUDA
  if (input.is_cuda()) return dcnv3_forward_cuda(input, offset, mask, geo);
#endif
  TORCH_CHECK(input.is_cpu(), "dcnv3: this build has no kernel for device ", input.device());
  return dcnv3_forward_cpu(input, offset, mask, geo);
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> dcnv3_backward(
    const torch::Tensor& input, const torch::Tensor& offset, const torch::Tensor& mask,
    const torch::Tensor& grad_output, int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w,
    int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w, int64_t group, int64_t group_channels,
    double offset_scale, bool remove_center, bool mask_softmax) {
  PERCEPTION_OPS_RECORD("perception_ops::dcnv3_backward");
  check_same(input, input, "input");
  check_same(input, offset, "offset");
  check_same(input, mask, "mask");
  check_same(input, grad_output, "grad_output");
  const auto geo = make_geometry(input, offset, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                 dilation_h, dilation_w, group, group_channels, offset_scale, remove_center,
                                 mask_softmax);
#ifdef WITH_CUDA
  if (input.is_cuda()) return dcnv3_backward_cuda(input, offset, mask, grad_output, geo);
#endif
  TORCH_CHECK(input.is_cpu(), "dcnv3: this build has no kernel for device ", input.device());
  return dcnv3_backward_cpu(input, offset, mask, grad_output, geo);
}

void check_msda(const torch::Tensor& value, const torch::Tensor& spatial_shapes,
                const torch::Tensor& level_start_index, const torch::Tensor& loc, const torch::Tensor& attn) {
  check_same(value, value, "value");
  check_same(value, loc, "sampling_locations");
  check_same(value, attn, "attention_weights");
  TORCH_CHECK(spatial_shapes.is_contiguous() && spatial_shapes.scalar_type() == torch::kLong &&
                  spatial_shapes.device() == value.device(),
              "spatial_shapes must be a contiguous int64 tensor on the value's device");
  TORCH_CHECK(level_start_index.is_contiguous() && level_start_index.scalar_type() == torch::kLong &&
                  level_start_index.device() == value.device(),
              "level_start_index must be a contiguous int64 tensor on the value's device");
}

torch::Tensor ms_deform_attn_forward(const torch::Tensor& value, const torch::Tensor& spatial_shapes,
                                     const torch::Tensor& level_start_index, const torch::Tensor& loc,
                                     const torch::Tensor& attn) {
  PERCEPTION_OPS_RECORD("perception_ops::ms_deform_attn_forward");
  check_msda(value, spatial_shapes, level_start_index, loc, attn);
#ifdef WITH_CUDA
  if (value.is_cuda()) return ms_deform_attn_forward_cuda(value, spatial_shapes, level_start_index, loc, attn);
#endif
  TORCH_CHECK(value.is_cpu(), "ms_deform_attn: this build has no kernel for device ", value.device());
  return ms_deform_attn_forward_cpu(value, spatial_shapes, level_start_index, loc, attn);
}

std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> ms_deform_attn_backward(
    const torch::Tensor& value, const torch::Tensor& spatial_shapes, const torch::Tensor& level_start_index,
    const torch::Tensor& loc, const torch::Tensor& attn, const torch::Tensor& grad_output) {
  PERCEPTION_OPS_RECORD("perception_ops::ms_deform_attn_backward");
  check_msda(value, spatial_shapes, level_start_index, loc, attn);
  check_same(value, grad_output, "grad_output");
#ifdef WITH_CUDA
  if (value.is_cuda())
    return ms_deform_attn_backward_cuda(value, spatial_shapes, level_start_index, loc, attn, grad_output);
#endif
  TORCH_CHECK(value.is_cpu(), "ms_deform_attn: this build has no kernel for device ", value.device());
  return ms_deform_attn_backward_cpu(value, spatial_shapes, level_start_index, loc, attn, grad_output);
}

}  // namespace
}  // namespace perception_ops

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "DCNv3 and multi-scale deformable attention kernels (perception-stack ops)";
  m.def("dcnv3_forward", &perception_ops::dcnv3_forward);
  m.def("dcnv3_backward", &perception_ops::dcnv3_backward);
  m.def("ms_deform_attn_forward", &perception_ops::ms_deform_attn_forward);
  m.def("ms_deform_attn_backward", &perception_ops::ms_deform_attn_backward);
}
