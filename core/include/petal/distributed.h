// petal::distributed: one process group spanning the processes of a launcher (mpirun, or
// torchrun-style RANK/WORLD_SIZE/LOCAL_RANK checked against MPI's view), with the collectives
// of data-parallel training on tensors of any device.
//
// Transport: MPI (docs/distributed.md). Every MPI call is made by one communication thread
// that owns MPI, in the order the collectives were issued, so asynchronous all-reduces
// (all_reduce_async) really overlap the caller's computation. cpu tensors are exchanged in
// place when contiguous; sim and cuda tensors (and non-contiguous views) are staged through
// host memory with the device's own copies, so the device code path runs on every rank.
//
// Before each collective the ranks exchange what they are about to do (collective, dtype,
// shape, root); a disagreement throws petal::Error on every rank, naming each rank's call,
// instead of exchanging mismatched buffers or hanging. A collective that the other ranks do
// not join within the timeout throws too (the group is then unusable: end the process).
#pragma once
#include <memory>
#include <string>

#include <petal/tensor.h>

namespace petal::distributed {

/// Reduction of all_reduce / reduce_scatter: elementwise sum, or sum divided by world size.
enum class ReduceOp { sum, avg };

/// True when this build contains the MPI transport (CMake option PETAL_MPI, on when MPI is found).
bool is_available();

/// Joins the process group of the launcher (idempotent). Throws when petal was built
/// without MPI, or when the environment and MPI disagree on rank or world size.
void init();
/// True after init() and before finalize().
bool is_initialized();
/// Waits for pending collectives and shuts the transport down (MPI_Finalize). Runs at
/// process exit when not called; the group cannot be initialised again afterwards.
void finalize();
/// For a program's top-level error handler: ends every rank of the job now (MPI_Abort with
/// code), so the others do not wait for this one until their timeout. Returns only when
/// the group is not initialised.
void abort(int code);

/// This process's rank in [0, world_size()); 0 when not initialised.
int rank();
/// Number of processes; 1 when not initialised.
int world_size();
/// Rank among the processes of this machine (selects the GPU); 0 when not initialised.
int local_rank();
/// True on rank 0, and in a process that never initialised the group.
bool is_main_process();
/// Name of the transport in use ("mpi (Open MPI v4.1.4)"), or "none".
std::string backend_name();

/// Seconds a collective waits for the other ranks before throwing (default 600, or the
/// environment variable PETAL_DIST_TIMEOUT_S).
void set_timeout(double seconds);
double timeout();

/// Blocks until every rank has reached this call.
void barrier();
/// Overwrites t on every rank with root's t (in place; shapes and dtypes must agree).
void broadcast(const Tensor& t, int root = 0);
/// Replaces t on every rank by the elementwise reduction of all ranks' t (in place).
void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::sum);
/// The ranks' tensors stacked in rank order: shape [world_size, *t.shape], on t's device.
Tensor all_gather(const Tensor& t);
/// Reduces t over the ranks and returns rank r's slice [r*n, (r+1)*n) of dimension 0,
/// where n = t.size(0) / world_size (which must divide it).
Tensor reduce_scatter(const Tensor& t, ReduceOp op = ReduceOp::sum);

/// A collective in flight; wait() completes it (and rethrows its error). Destroying an
/// unwaited Work waits for it (errors are then swallowed).
class Work {
 public:
  Work() = default;
  ~Work();
  Work(Work&&) noexcept;
  Work& operator=(Work&&) noexcept;
  /// Waits for completion and writes the result into the tensor given at launch.
  void wait();
  /// True when wait() would not block on the transport.
  bool is_completed() const;
  bool valid() const { return state_ != nullptr; }
  struct State;

 private:
  friend Work all_reduce_async(const Tensor& t, ReduceOp op);
  explicit Work(std::shared_ptr<State> s) : state_(std::move(s)) {}
  std::shared_ptr<State> state_;
};

/// Starts all_reduce(t, op) and returns at once; t must not be read or written until
/// wait(). Collectives complete in the order they were issued.
Work all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::sum);

}  // namespace petal::distributed
