// The MPI transport of petal::distributed: MPI_Init_thread from the launcher's environment
// (mpirun sets OMPI_COMM_WORLD_*; torchrun-style RANK/WORLD_SIZE/LOCAL_RANK are checked
// against what MPI reports, since MPI cannot be bootstrapped from them alone), a private
// duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN so failures become petal::Error, and
// the collectives as MPI's blocking ones. bf16/f16 sums use a user MPI_Op that adds in
// float32 and rounds to nearest even (as CUDA's conversions do). Element counts above
// INT_MAX are split into several calls where MPI allows it.
//
// Assumption: only the frontend's communication thread calls in here (MPI_THREAD_SERIALIZED
// is requested, because that thread is not necessarily the process's main thread), except
// abort(), which ends the job from whichever thread handles a fatal error.
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include <petal/error.h>

#include "distributed/transport.h"

namespace petal::distributed::detail {
namespace {

std::string mpi_error_string(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(code);
  return std::string(text, static_cast<size_t>(len));
}

#define PETAL_MPI_CHECK(call)                                                                  \
  do {                                                                                         \
    const int petal_mpi_rc = (call);                                                           \
    if (petal_mpi_rc != MPI_SUCCESS)                                                           \
      PETAL_FAIL("distributed (MPI): ", #call, " failed: ", mpi_error_string(petal_mpi_rc), " (", \
                 __FILE__, ":", __LINE__, ")");                                                \
  } while (0)

template <float (*ToFloat)(uint16_t), uint16_t (*FromFloat)(float)>
void half_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = FromFloat(ToFloat(a[i]) + ToFloat(b[i]));
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  PETAL_CHECK(end && *end == '\0' && x >= 0 && x <= INT_MAX, "distributed: environment variable ", name, "='", v,
              "' is not a non-negative integer");
  return static_cast<int>(x);
}

class MpiTransport final : public Transport {
 public:
  MpiTransport() {
    int initialized = 0;
    PETAL_MPI_CHECK(MPI_Initialized(&initialized));
    if (initialized) {
      int level = 0;
      PETAL_MPI_CHECK(MPI_Query_thread(&level));
      PETAL_CHECK(level >= MPI_THREAD_SERIALIZED,
                  "distributed: MPI was initialised by the program with a thread level below MPI_THREAD_SERIALIZED; "
                  "petal calls MPI from its communication thread: initialise with MPI_Init_thread(MPI_THREAD_SERIALIZED) "
                  "or let petal::distributed::init() do it");
    } else {
      int provided = 0;
      PETAL_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided));
      owns_mpi_ = true;
      if (provided < MPI_THREAD_SERIALIZED) {
        MPI_Finalize();
        PETAL_FAIL("distributed: this MPI provides thread level ", provided,
                   " but petal needs MPI_THREAD_SERIALIZED (its communication thread is not the main thread)");
      }
    }
    PETAL_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm_));
    PETAL_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    PETAL_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    PETAL_MPI_CHECK(MPI_Comm_size(comm_, &size_));
    check_environment();
    local_rank_ = find_local_rank();
    PETAL_MPI_CHECK(MPI_Op_create(&half_sum<bf16_bits_to_float, float_to_bf16_bits>, 1, &bf16_sum_));
    PETAL_MPI_CHECK(MPI_Op_create(&half_sum<f16_bits_to_float, float_to_f16_bits>, 1, &f16_sum_));
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<size_t>(len));
    name_ = "mpi (" + v.substr(0, v.find(',')) + ")";
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string name() const override { return name_; }

  void barrier() override { PETAL_MPI_CHECK(MPI_Barrier(comm_)); }

  void all_gather_bytes(const void* in, void* out, size_t nbytes) override {
    PETAL_CHECK(nbytes <= INT_MAX, "distributed: all_gather of ", nbytes, " bytes exceeds one MPI call");
    PETAL_MPI_CHECK(MPI_Allgather(in, static_cast<int>(nbytes), MPI_BYTE, out, static_cast<int>(nbytes), MPI_BYTE, comm_));
  }

  void broadcast(void* buf, size_t count, DType dtype, int root) override {
    // Bytes: a broadcast does no arithmetic, so every dtype (bool included) travels alike.
    auto* p = static_cast<char*>(buf);
    size_t left = count * dtype_size(dtype);
    while (left > 0) {
      const size_t n = left < size_t(INT_MAX) ? left : size_t(INT_MAX);
      PETAL_MPI_CHECK(MPI_Bcast(p, static_cast<int>(n), MPI_BYTE, root, comm_));
      p += n;
      left -= n;
    }
  }

  void all_reduce_sum(void* buf, size_t count, DType dtype) override {
    MPI_Datatype type;
    MPI_Op op;
    sum_of(dtype, type, op);
    auto* p = static_cast<char*>(buf);
    while (count > 0) {
      const size_t n = count < size_t(INT_MAX) ? count : size_t(INT_MAX);
      PETAL_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p, static_cast<int>(n), type, op, comm_));
      p += n * dtype_size(dtype);
      count -= n;
    }
  }

  void all_gather(const void* in, void* out, size_t count, DType dtype) override {
    all_gather_bytes(in, out, count * dtype_size(dtype));
  }

  void reduce_scatter_sum(const void* in, void* out, size_t count, DType dtype) override {
    MPI_Datatype type;
    MPI_Op op;
    sum_of(dtype, type, op);
    PETAL_CHECK(count <= INT_MAX, "distributed: reduce_scatter of ", count, " elements per rank exceeds one MPI call");
    PETAL_MPI_CHECK(MPI_Reduce_scatter_block(in, out, static_cast<int>(count), type, op, comm_));
  }

  void shutdown() override {
    if (comm_ == MPI_COMM_NULL) return;
    MPI_Op_free(&bf16_sum_);
    MPI_Op_free(&f16_sum_);
    MPI_Comm_free(&comm_);
    comm_ = MPI_COMM_NULL;
    if (owns_mpi_) PETAL_MPI_CHECK(MPI_Finalize());
  }

  void abort(int code) override { MPI_Abort(comm_ == MPI_COMM_NULL ? MPI_COMM_WORLD : comm_, code); }

 private:
  void sum_of(DType dtype, MPI_Datatype& type, MPI_Op& op) const {
    op = MPI_SUM;
    switch (dtype) {
      case DType::f32: type = MPI_FLOAT; return;
      case DType::f64: type = MPI_DOUBLE; return;
      case DType::i32: type = MPI_INT32_T; return;
      case DType::i64: type = MPI_INT64_T; return;
      case DType::u8: type = MPI_UINT8_T; return;
      case DType::bf16: type = MPI_UINT16_T; op = bf16_sum_; return;
      case DType::f16: type = MPI_UINT16_T; op = f16_sum_; return;
      case DType::b8: break;
    }
    PETAL_FAIL("distributed: no sum for dtype ", dtype_name(dtype));
  }

  // The launcher's variables must describe the same job MPI sees: a torchrun-style
  // WORLD_SIZE=4 with a plain (singleton) MPI start would otherwise train 4 unsynchronised
  // copies of the model.
  void check_environment() const {
    struct Pair { const char* size; const char* rank; };
    for (const Pair& p : {Pair{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"}, Pair{"PMI_SIZE", "PMI_RANK"},
                          Pair{"WORLD_SIZE", "RANK"}}) {
      const int s = env_int(p.size, -1), r = env_int(p.rank, -1);
      PETAL_CHECK(s < 0 || s == size_, "distributed: ", p.size, "=", s, " but MPI started ", size_,
                  " process(es): launch every rank with mpirun -np ", s, " (an MPI launcher bootstraps petal's group)");
      PETAL_CHECK(r < 0 || r == rank_, "distributed: ", p.rank, "=", r, " but MPI says this process is rank ", rank_);
    }
  }

  int find_local_rank() const {
    for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK"}) {
      const int v = env_int(name, -1);
      if (v >= 0) return v;
    }
    MPI_Comm node;
    PETAL_MPI_CHECK(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node));
    int r = 0;
    MPI_Comm_rank(node, &r);
    MPI_Comm_free(&node);
    return r;
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Op bf16_sum_ = MPI_OP_NULL, f16_sum_ = MPI_OP_NULL;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool owns_mpi_ = false;
  std::string name_;
};

}  // namespace

std::unique_ptr<Transport> make_mpi_transport() { return std::make_unique<MpiTransport>(); }

}  // namespace petal::distributed::detail
