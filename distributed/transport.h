// The transport interface behind petal::distributed (core/src/distributed.cpp): synchronous
// collectives on contiguous host buffers. The frontend calls a transport only from its
// communication thread, one call at a time, in issue order, after it has checked that all
// ranks agree on the call; a transport therefore neither validates shapes nor locks.
// Implementations: distributed/mpi.cpp (built when CMake finds MPI). Internal: not installed.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include <petal/dtype.h>

namespace petal::distributed::detail {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  virtual std::string name() const = 0;

  virtual void barrier() = 0;
  /// out (world_size * nbytes) receives every rank's nbytes of in, in rank order.
  virtual void all_gather_bytes(const void* in, void* out, size_t nbytes) = 0;
  /// buf (count elements of dtype) takes root's values on every rank.
  virtual void broadcast(void* buf, size_t count, DType dtype, int root) = 0;
  /// buf becomes the elementwise sum over ranks.
  virtual void all_reduce_sum(void* buf, size_t count, DType dtype) = 0;
  /// out (world_size * count) receives every rank's count elements of in, in rank order.
  virtual void all_gather(const void* in, void* out, size_t count, DType dtype) = 0;
  /// out (count) receives this rank's block of the elementwise sum of in (world_size * count).
  virtual void reduce_scatter_sum(const void* in, void* out, size_t count, DType dtype) = 0;
  /// Ends the transport (MPI_Finalize when this transport initialised MPI).
  virtual void shutdown() = 0;
  /// Ends the whole job with code (MPI_Abort); may be called from any thread.
  virtual void abort(int code) = 0;
};

/// Initialises MPI from the launcher's environment; called on the communication thread.
std::unique_ptr<Transport> make_mpi_transport();

}  // namespace petal::distributed::detail
