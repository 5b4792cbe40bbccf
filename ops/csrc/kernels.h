// Declarations of the per-device kernels. bindings.cpp validates arguments and dispatches here.
#pragma once
#include <torch/extension.h>

#include <tuple>

#include "sampling.h"

namespace perception_ops {

torch::Tensor dcnv3_forward_cpu(const torch::Tensor& input, const torch::Tensor& offset,
                                const torch::Tensor& mask, const DCNv3Geometry& geo);
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> dcnv3_backward_cpu(
    const torch::Tensor& input, const torch::Tensor& offset, const torch::Tensor& mask,
    const torch::Tensor& grad_output, const DCNv3Geometry& geo);

torch::Tensor ms_deform_attn_forward_cpu(const torch::Tensor& value, const torch::Tensor& spatial_shapes,
                                         const torch::Tensor& level_start_index,
                                         const torch::Tensor& sampling_locations,
                                         const torch::Tensor& attention_weights);
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> ms_deform_attn_backward_cpu(
    const torch::Tensor& value, const torch::Tensor& spatial_shapes, const torch::Tensor& level_start_index,
    const torch::Tensor& sampling_locations, const torch::Tensor& attention_weights,
    const torch::Tensor& grad_output);

#ifdef WITH_CUDA
torch::Tensor dcnv3_forward_cuda(const torch::Tensor& input, const torch::Tensor& offset,
                                 const torch::Tensor& mask, const DCNv3Geometry& geo);
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> dcnv3_backward_cuda(
    const torch::Tensor& input, const torch::Tensor& offset, const torch::Tensor& mask,
    const torch::Tensor& grad_output, const DCNv3Geometry& geo);

torch::Tensor ms_deform_attn_forward_cuda(const torch::Tensor& value, const torch::Tensor& spatial_shapes,
                                          const torch::Tensor& level_start_index,
                                          const torch::Tensor& sampling_locations,
                                          const torch::Tensor& attention_weights);
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> ms_deform_attn_backward_cuda(
    const torch::Tensor& value, const torch::Tensor& spatial_shapes, const torch::Tensor& level_start_index,
    const torch::Tensor& sampling_locations, const torch::Tensor& attention_weights,
    const torch::Tensor& grad_output);
#endif

}  // namespace perception_ops
