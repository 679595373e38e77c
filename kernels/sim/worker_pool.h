// A small pool of host threads for the simulator: run(n, work) executes work() on n host
// threads (the calling thread included) and returns when all have finished. Workers persist
// between launches, so their thread-local fiber stacks and block state are reused.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace petal::sim {

/// Host threads that run the blocks of a launch; the launching thread takes part too.
class WorkerPool {
 public:
  ~WorkerPool() { resize(0); }

  /// Runs work() on `participants` host threads (this one included) and waits for all.
  template <typename F>
  void run(int participants, F&& work) {
    resize(participants - 1);
    std::function<void()> job(std::forward<F>(work));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      active_ = participants - 1;
      ++generation_;
    }
    wake_.notify_all();
    job();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return active_ == 0; });
    job_ = nullptr;
  }

 private:
  void resize(int n) {
    if (n < 0) n = 0;
    if (static_cast<size_t>(n) == workers_.size()) return;
    if (static_cast<size_t>(n) < workers_.size()) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_ = true;
      }
      wake_.notify_all();
      for (std::thread& w : workers_) w.join();
      workers_.clear();
      stop_ = false;
    }
    // A new worker starts from the current generation: it must not miss a job posted before
    // it got to run.
    while (workers_.size() < static_cast<size_t>(n)) workers_.emplace_back([this, g = generation_] { loop(g); });
  }

  void loop(uint64_t seen) {
    for (;;) {
      std::function<void()>* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      (*job)();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --active_;
      }
      done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::function<void()>* job_ = nullptr;
  int active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace petal::sim
