// vit_flowers' outputs and run controls (the program's code is compiled into the test binary
// by tests/test_vit_flowers.cpp): metrics.csv and curves.png written as training goes, the
// tqdm-shaped progress line, --work-flow, predict's titled picture and folder CSV, the
// decoded-image cache, no host synchronization inside a training step (counted on sim), and
// Ctrl-C (SIGINT sent to a child process training a tiny model): checkpoint, exit 130, and a
// --resume that continues with the numbers of an uninterrupted run.
#include <chrono>
#include <cmath>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <petal/data/cache.h>

#include "examples/vit_flowers/interrupt.h"
#include "examples/vit_flowers/metrics.h"
#include "examples/vit_flowers/plot.h"
#include "examples/vit_flowers/predict.h"
#include "examples/vit_flowers/progress.h"
#include "examples/vit_flowers/trainer.h"
#include "examples/vit_flowers/workflow.h"
#include "testing.h"
#include "vit_flowers_testing.h"

namespace fs = std::filesystem;

// Defined only when petal is built with the simulator (kernels/cuda/backend.cu); weak, so
// this test links without it.
namespace petal::kernels::sim_impl {
int64_t host_sync_count() __attribute__((weak));
}

namespace {

using vit_flowers_testing::small_config;
using vit_flowers_testing::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("vit_flowers writes metrics.csv and curves.png after every epoch", "[vit_flowers][outputs]") {
  TempDir out("metrics");
  vit_flowers::TrainConfig c = small_config(out.path);
  std::ostringstream log;
  vit_flowers::TrainResult r = vit_flowers::train(c, log);
  INFO(log.str());
  REQUIRE(r.history.size() == 3);
  const auto lines = lines_of(slurp(r.metrics_csv));
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_s");
  const auto rows = vit_flowers::read_metrics_csv(r.metrics_csv);
  REQUIRE(rows.size() == 3);
  for (size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].epoch == static_cast<int64_t>(i));
    CHECK(rows[i].lr == Approx(r.history[i].lr).epsilon(1e-5));
    CHECK(rows[i].train_loss == Approx(r.history[i].train_loss).margin(1e-6));
    CHECK(rows[i].val_acc == Approx(r.history[i].val_acc).margin(1e-6));
    CHECK(rows[i].seconds > 0);
    CHECK(rows[i].images_per_s > 0);
    // The training pass saw 40 images: the reported rate is 40 / (its time <= the epoch's).
    CHECK(rows[i].images_per_s >= 40 / rows[i].seconds * 0.98);
  }
  // The accuracy is a count over the 10 validation images.
  for (const auto& row : rows) CHECK(std::fabs(row.val_acc * 10 - std::round(row.val_acc * 10)) < 1e-9);

  // curves.png: a PNG of the documented size that decodes, and not a blank canvas.
  const petal::Tensor png = petal::data::read_image(r.curves_png, 3);
  REQUIRE(png.size(0) == vit_flowers::kCurvesHeight);
  REQUIRE(png.size(1) == vit_flowers::kCurvesWidth);
  const petal::Tensor f = png.to(petal::DType::f32);
  CHECK(petal::min(f).item() < 100.0);  // lines and text were drawn on the white background

  // --resume keeps the earlier rows and appends.
  c.epochs = 4;
  c.resume = r.last_checkpoint;
  std::ostringstream log2;
  vit_flowers::train(c, log2);
  const auto rows2 = vit_flowers::read_metrics_csv(r.metrics_csv);
  REQUIRE(rows2.size() == 4);
  for (size_t i = 0; i < 3; ++i) CHECK(rows2[i].train_loss == rows[i].train_loss);
  CHECK(rows2[3].epoch == 3);

  // A damaged metrics.csv is named, with the line.
  petal::write_file_atomic(out.path + "/bad.csv", std::string(lines[0]) + "\n1,0.1,x,,,,,\n");
  CHECK_THROWS_WITH(vit_flowers::read_metrics_csv(out.path + "/bad.csv"),
                    Catch::Contains("bad.csv") && Catch::Contains("line 2") && Catch::Contains("train_loss"));
}

TEST_CASE("vit_flowers curves and titles are drawn with the DejaVu font, or without text", "[vit_flowers][outputs]") {
  TempDir out("plot");
  std::vector<vit_flowers::EpochStats> rows(5);
  for (int i = 0; i < 5; ++i) {
    rows[static_cast<size_t>(i)].epoch = i;
    rows[static_cast<size_t>(i)].train_loss = 1.5 / (i + 1);
    rows[static_cast<size_t>(i)].train_acc = 0.2 + 0.15 * i;
    if (i != 2) rows[static_cast<size_t>(i)].val_loss = 1.6 / (i + 1);  // a gap: no val after epoch 3
    if (i != 2) rows[static_cast<size_t>(i)].val_acc = 0.25 + 0.1 * i;
  }
  const vit_flowers::Font* font = vit_flowers::default_font();
  if (font == nullptr) WARN("no DejaVuSans.ttf (fonts-dejavu-core): checking the text-less pictures only");
  vit_flowers::plot_curves(rows, out.path + "/with.png", font);
  vit_flowers::plot_curves(rows, out.path + "/without.png", nullptr);
  const petal::Tensor with = petal::data::read_image(out.path + "/with.png", 3);
  const petal::Tensor without = petal::data::read_image(out.path + "/without.png", 3);
  CHECK(with.shape() == petal::Shape{vit_flowers::kCurvesHeight, vit_flowers::kCurvesWidth, 3});
  CHECK(without.shape() == with.shape());
  if (font != nullptr) {
    // Text adds dark pixels; both pictures have the same curves.
    const double dark_with = petal::sum(petal::lt(with.to(petal::DType::f32), 90.0).to(petal::DType::f32)).item();
    const double dark_without = petal::sum(petal::lt(without.to(petal::DType::f32), 90.0).to(petal::DType::f32)).item();
    CHECK(dark_with > dark_without + 200);
    CHECK(vit_flowers::Canvas::text_width(font, "daisy: 97.31%", 22) > 60);
  }
  CHECK_THROWS_WITH(vit_flowers::Font(out.path + "/with.png"), Catch::Contains("with.png") && Catch::Contains("not a TrueType"));

  // The prediction picture: scaled to a 448-pixel longer side under a 40-pixel title band.
  CHECK(vit_flowers::prediction_image_size(20, 20) == std::make_pair<int64_t, int64_t>(448, 488));
  CHECK(vit_flowers::prediction_image_size(320, 240) == std::make_pair<int64_t, int64_t>(448, 376));
  petal::Tensor img = petal::zeros({30, 40, 3}, petal::TensorOptions(petal::DType::u8));
  vit_flowers::write_prediction_image(img, "daisy: 97.31%", out.path + "/pred.png", font);
  const petal::Tensor pred = petal::data::read_image(out.path + "/pred.png", 3);
  CHECK(pred.shape() == petal::Shape{336 + 40, 448, 3});
  // The title band is white with (when a font exists) dark text; the image below is black.
  const petal::Tensor band = pred.narrow(0, 0, 40).to(petal::DType::f32);
  CHECK(petal::max(band).item() == 255.0);
  if (font != nullptr) CHECK(petal::min(band).item() < 60.0);
  CHECK(petal::max(pred.narrow(0, 41, 300).to(petal::DType::f32)).item() == 0.0);
}

TEST_CASE("vit_flowers progress lines have tqdm's shape", "[vit_flowers][outputs]") {
  using vit_flowers::format_progress;
  CHECK(format_progress("[train epoch 3]", 45, 58, 12.2, 45 * 32, 0.8121, 0.7019) ==
        "[train epoch 3]  45/58 [00:12<00:03, 3.7 it/s, 118 img/s] loss 0.812 acc 0.702");
  CHECK(format_progress("[train epoch 3]", 5, 58, 12.0, 160, -1, -1) ==
        "[train epoch 3]   5/58 [00:12<02:07, 2.40 s/it, 13 img/s]");
  CHECK(format_progress("[valid epoch 1]", 0, 7, 0.0, 0, -1, -1) == "[valid epoch 1]  0/7 [00:00<?, ? it/s]");
  CHECK(vit_flowers::format_interval(3723.9) == "1:02:03");
  CHECK(vit_flowers::format_interval(59.99) == "00:59");

  // Off a terminal: a line whenever the metrics were read; on one: '\r' redraws and a final newline.
  std::ostringstream plain, tty;
  vit_flowers::Progress p(plain, true, false, "[t]", 4), q(tty, true, true, "[t]", 4);
  for (int s = 1; s <= 4; ++s) {
    p.update(s, s * 8, 0.5, 0.5, s % 2 == 0);
    q.update(s, s * 8, 0.5, 0.5, s % 2 == 0);
  }
  CHECK(lines_of(plain.str()).size() == 2);
  CHECK(plain.str().find('\r') == std::string::npos);
  const std::string t = tty.str();
  CHECK(std::count(t.begin(), t.end(), '\r') == 4);
  CHECK(t.back() == '\n');
  CHECK(std::count(t.begin(), t.end(), '\n') == 1);
}

TEST_CASE("vit_flowers --work-flow parses the seed's Runner workflows", "[vit_flowers][workflow]") {
  using vit_flowers::parse_workflow;
  using vit_flowers::WorkflowStage;
  auto w = parse_workflow("train:1,val:1");
  REQUIRE(w.size() == 2);
  CHECK((w[0].mode == WorkflowStage::train && w[0].passes == 1 && w[1].mode == WorkflowStage::val));
  CHECK(vit_flowers::workflow_str(parse_workflow("train:3,val:2")) == "train:3,val:2");
  CHECK(vit_flowers::workflow_str(parse_workflow("train")) == "train:1");
  CHECK(vit_flowers::workflow_str(parse_workflow("val:1,train:2")) == "val:1,train:2");
  CHECK_THROWS_WITH(parse_workflow("train:0,val:1"), Catch::Contains("'train:0'") && Catch::Contains("positive"));
  CHECK_THROWS_WITH(parse_workflow("train:x"), Catch::Contains("'x'"));
  CHECK_THROWS_WITH(parse_workflow("train:1,test:1"), Catch::Contains("unknown mode 'test'"));
  CHECK_THROWS_WITH(parse_workflow("val:1"), Catch::Contains("no train stage"));
  CHECK_THROWS_WITH(parse_workflow("train:1,,val:1"), Catch::Contains("empty stage"));
  CHECK_THROWS_WITH(parse_workflow(""), Catch::Contains("empty stage"));
  CHECK_THROWS_WITH(parse_workflow("train:1.5"), Catch::Contains("'1.5'"));

  // train:2,val:1 for 3 epochs: train 1, train 2, val, train 3, val (the cycle is finished).
  TempDir out("workflow");
  vit_flowers::TrainConfig c = small_config(out.path);
  c.work_flow = "train:2,val:1";
  std::ostringstream log;
  vit_flowers::TrainResult r = vit_flowers::train(c, log);
  INFO(log.str());
  REQUIRE(r.history.size() == 3);
  CHECK(std::isnan(r.history[0].val_loss));
  CHECK(std::isfinite(r.history[1].val_loss));
  CHECK(std::isfinite(r.history[2].val_loss));
  const auto lines = lines_of(slurp(r.metrics_csv));
  REQUIRE(lines.size() == 4);
  CHECK(lines[1].find(",,,") != std::string::npos);  // epoch 1: empty val_loss and val_acc
  CHECK(r.best_epoch >= 1);
}

TEST_CASE("vit_flowers predict: the titled picture and a folder's CSV", "[vit_flowers][predict]") {
  TempDir out("predict");
  vit_flowers::TrainConfig c = small_config(out.path);
  c.epochs = 1;
  std::ostringstream log;
  vit_flowers::TrainResult r = vit_flowers::train(c, log);
  CHECK(vit_flowers::prediction_title("daisy", 0.973149) == "daisy: 97.31%");
  CHECK(vit_flowers::prediction_title("roses", 1.0) == "roses: 100.00%");

  const vit_flowers::Predictor predictor(r.best_checkpoint);
  const std::string dir = out.path + "/synthetic_flowers/tulips";
  fs::copy_file(out.path + "/synthetic_flowers/daisy/daisy_00001.png", dir + "/with,comma.png");
  petal::write_file_atomic(dir + "/broken.png", "not a png");
  std::ostringstream plog;
  const std::string csv = out.path + "/predictions.csv";
  const int64_t n = vit_flowers::predict_folder(predictor, dir, csv, 3, plog);
  CHECK(n == 11);
  const auto lines = lines_of(slurp(csv));
  REQUIRE(lines.size() == 13);
  CHECK(lines[0] == "path,class,confidence,top_k");
  const auto images = vit_flowers::list_images(dir);
  REQUIRE(images.size() == 12);
  for (size_t i = 0; i < images.size(); ++i) {
    INFO(lines[i + 1]);
    if (images[i].find("broken") != std::string::npos) {
      CHECK(lines[i + 1].find(",error,,") != std::string::npos);
      continue;
    }
    const auto ranked = predictor.classify_file(images[i], 3);
    char conf[32];
    std::snprintf(conf, sizeof(conf), "%.6f", ranked[0].second);
    CHECK(lines[i + 1].rfind(vit_flowers::csv_field(images[i]) + "," + ranked[0].first + "," + conf + ",", 0) == 0);
    CHECK(std::count(lines[i + 1].begin(), lines[i + 1].end(), ';') == 2);  // top 3
  }
  CHECK(vit_flowers::csv_field("a,b") == "\"a,b\"");
  CHECK(vit_flowers::csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK_THROWS_WITH(vit_flowers::list_images(out.path + "/nothing"), Catch::Contains("nothing"));
}

TEST_CASE("the decoded-image cache decodes each image once and changes no batch", "[vit_flowers][data][cache]") {
  TempDir out("cache");
  petal::data::SyntheticFlowersOptions so;
  so.per_class = 3;
  so.size = 24;
  so.format = "png";
  petal::data::make_synthetic_flowers(out.path, so);
  petal::data::ImageFolder folder(out.path);
  auto tf = std::make_shared<petal::data::Compose>(std::vector<petal::data::TransformPtr>{
      std::make_shared<petal::data::RandomResizedCrop>(16), std::make_shared<petal::data::RandomHorizontalFlip>(),
      std::make_shared<petal::data::ToTensor>()});
  auto plain = std::make_shared<petal::data::ImageDataset>(folder.samples(), tf);
  auto cached = std::make_shared<petal::data::CachedImageDataset>(folder.samples(), tf, int64_t(1) << 30);
  petal::data::DataLoaderOptions lo;
  lo.batch_size = 4;
  lo.shuffle = true;
  lo.num_workers = 2;
  lo.seed = 9;
  petal::data::DataLoader a(plain, lo), b(cached, lo);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    auto pa = a.epoch(epoch), pb = b.epoch(epoch);
    while (auto ba = pa.next()) {
      auto bb = pb.next();
      REQUIRE(bb);
      petal::testing::check_close(bb->images, ba->images, 0.0, "cached batch");
    }
  }
  auto st = cached->cache_stats();
  CHECK(st.decodes == 15);  // once per image, in the first epoch only
  CHECK(st.entries == 15);
  CHECK(st.hits == 30);
  CHECK(st.bytes == 15 * 24 * 24 * 3);

  // Bounded: room for 4 images keeps 4, and the rest are decoded on every access.
  petal::data::CachedImageDataset small(folder.samples(), tf, 4 * 24 * 24 * 3);
  petal::data::Rng rng(1);
  for (int pass = 0; pass < 2; ++pass)
    for (size_t i = 0; i < small.size(); ++i) small.get(i, rng);
  CHECK(small.cache_stats().entries == 4);
  CHECK(small.cache_stats().decodes == 15 + 11);
  // Off (0 bytes): nothing kept. Shrunk: shorter side 12.
  petal::data::CachedImageDataset off(folder.samples(), tf, 0);
  off.get(0, rng);
  off.get(0, rng);
  CHECK(off.cache_stats().decodes == 2);
  petal::data::ImageCache shrink(int64_t(1) << 20, 12);
  petal::Tensor img = shrink.get(0, [] { return petal::zeros({24, 36, 3}, petal::TensorOptions(petal::DType::u8)); });
  CHECK(img.shape() == petal::Shape{12, 18, 3});
  CHECK_THROWS_WITH(petal::data::ImageCache(1, -1), Catch::Contains("short_side"));
}

TEST_CASE("vit_flowers training steps do not synchronize with the device", "[vit_flowers][sim][sync]") {
  if (!petal::sim::is_available() || &petal::kernels::sim_impl::host_sync_count == nullptr) {
    WARN("skipped: petal was built without the SIMT simulator");
    std::exit(4);
  }
  // Two runs on sim that differ only in the number of training steps (batch 10: 2 steps,
  // batch 5: 4 steps; the same data, checkpoints and one read of the totals per pass) must
  // synchronize the same number of times: no step waits for the device. With a read every
  // step, each extra step is one synchronization (the counter sees what it should).
  TempDir out("sync");
  auto syncs = [&](int64_t batch, int64_t log_every) {
    vit_flowers::TrainConfig c = small_config(out.path + "/b" + std::to_string(batch) + "_" + std::to_string(log_every));
    c.device = "sim";
    c.synthetic_per_class = 5;  // 20 train, 5 val
    c.img_size = 8;
    c.synthetic_size = 10;
    c.width = 8;
    c.heads = 2;
    c.epochs = 1;
    c.batch_size = batch;
    c.clip_grad = 1.0;
    c.log_every = log_every;
    c.plots = false;
    std::ostringstream log;
    const int64_t before = petal::kernels::sim_impl::host_sync_count();
    vit_flowers::TrainResult r = vit_flowers::train(c, log);
    INFO(log.str());
    REQUIRE(r.history.size() == 1);
    REQUIRE(std::isfinite(r.history[0].train_loss));
    return petal::kernels::sim_impl::host_sync_count() - before;
  };
  const int64_t two_steps = syncs(10, 1000), four_steps = syncs(5, 1000);
  INFO("host synchronizations per run: " << two_steps << " with 2+1 steps, " << four_steps << " with 4+1 steps");
  CHECK(two_steps == four_steps);
  const int64_t every_step = syncs(5, 1);
  // 3 training reads before the last step (none extra in the 1-step val pass), each one
  // copy of the totals plus one of the cross-entropy target checks pending since the last
  // read (deferred to the next synchronization, all stacked into one copy).
  CHECK(every_step == four_steps + 2 * 3);
}

// ---------------------------------------------------------------- Ctrl-C

namespace {

/// The child: a tiny training with the SIGINT handler installed (run as a separate process
/// of this binary by the tests below); exits 130 when interrupted.
vit_flowers::TrainConfig sigint_config(const std::string& out, int64_t epochs) {
  vit_flowers::TrainConfig c = small_config(out);
  c.epochs = epochs;
  c.lrf = 1.0;  // a constant rate: the run's length does not change its numbers
  c.batch_size = 4;
  c.workers = 0;
  c.plots = false;
  c.cache_mb = 0;
  return c;
}

pid_t spawn_child(const std::string& out, const std::string& log_path, bool slow = false) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    ::setenv("PETAL_TEST_VF_CHILD_OUT", out.c_str(), 1);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    if (slow) ::setenv("PETAL_TEST_VF_CHILD_SLOW", "1", 1);
    ::execl("/proc/self/exe", "petal_tests", "[.vit_flowers_sigint_child]", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

/// Waits (up to 60 s) for path to exist; false if the child ended first.
bool wait_for(const std::string& path, pid_t child) {
  for (int i = 0; i < 6000; ++i) {
    if (fs::exists(path)) return true;
    int status = 0;
    if (::waitpid(child, &status, WNOHANG) == child) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

int wait_exit(pid_t child) {
  int status = 0;
  for (int i = 0; i < 6000; ++i) {
    if (::waitpid(child, &status, WNOHANG) == child) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
  FAIL("the interrupted child did not exit within 60 s");
  return status;
}

}  // namespace

TEST_CASE("vit_flowers sigint child", "[.vit_flowers_sigint_child]") {
  const char* out = std::getenv("PETAL_TEST_VF_CHILD_OUT");
  REQUIRE(out != nullptr);
  vit_flowers::install_interrupt_handler();
  vit_flowers::TrainConfig c = sigint_config(out, 1000);
  if (std::getenv("PETAL_TEST_VF_CHILD_SLOW") != nullptr) {  // steps long enough to send a second signal within one
    c.img_size = 32;
    c.synthetic_size = 32;
    c.width = 192;
    c.heads = 3;
    c.depth = 2;
    c.batch_size = 20;
  }
  const vit_flowers::TrainResult r = vit_flowers::train(c, std::cout);
  std::cout << std::flush;
  std::_Exit(r.interrupted ? vit_flowers::kInterruptedExitCode : 0);
}

TEST_CASE("vit_flowers Ctrl-C: finishes the step, saves, exits 130; --resume continues exactly", "[vit_flowers][sigint]") {
  TempDir out("sigint");
  const std::string run = out.path + "/run", log_path = out.path + "/child.log";
  const pid_t child = spawn_child(run, log_path);
  REQUIRE(child > 0);
  REQUIRE(wait_for(run + "/metrics.csv", child));  // one epoch done: now inside the training loop
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  REQUIRE(::kill(child, SIGINT) == 0);
  const int status = wait_exit(child);
  const std::string child_log = slurp(log_path);
  INFO(child_log);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(child_log.find("finishing the current step") != std::string::npos);
  CHECK(child_log.find("--resume " + run + "/checkpoint-last.safetensors") != std::string::npos);
  const std::string ck = run + "/checkpoint-last.safetensors";
  REQUIRE(fs::exists(ck));
  const auto meta = petal::load_safetensors_metadata(ck);
  const int64_t done = std::stoll(meta.at("epoch"));
  const bool mid_pass = meta.count("extra.interrupted.steps") != 0;
  INFO("interrupted after " << done << " epochs" << (mid_pass ? ", mid-pass at step " + meta.at("extra.interrupted.steps") : ""));

  // Resume to the end of the interrupted epoch (+1), and compare with an uninterrupted run.
  const int64_t target = done + 1;
  vit_flowers::TrainConfig resumed = sigint_config(run, target);
  resumed.resume = ck;
  std::ostringstream rlog;
  const vit_flowers::TrainResult rr = vit_flowers::train(resumed, rlog);
  INFO(rlog.str());
  REQUIRE(!rr.interrupted);
  REQUIRE(!rr.history.empty());
  std::ostringstream flog;
  const vit_flowers::TrainResult full = vit_flowers::train(sigint_config(out.path + "/full", target), flog);
  REQUIRE(static_cast<int64_t>(full.history.size()) == target);
  const auto& a = rr.history.back();
  const auto& b = full.history.back();
  CHECK(a.epoch == b.epoch);
  CHECK(a.train_loss == Approx(b.train_loss).epsilon(1e-12));
  CHECK(a.train_acc == b.train_acc);
  CHECK(a.val_loss == Approx(b.val_loss).epsilon(1e-12));
  CHECK(a.val_acc == b.val_acc);
  const auto rows = vit_flowers::read_metrics_csv(run + "/metrics.csv");
  CHECK(static_cast<int64_t>(rows.size()) == target);
}

TEST_CASE("vit_flowers a second Ctrl-C aborts at once", "[vit_flowers][sigint]") {
  TempDir out("sigint2");
  const std::string run = out.path + "/run";
  const std::string log_path = out.path + "/child.log";
  const pid_t child = spawn_child(run, log_path, true);
  REQUIRE(child > 0);
  REQUIRE(wait_for(run + "/metrics.csv", child));
  REQUIRE(::kill(child, SIGINT) == 0);
  // The second signal once the first was handled (two pending SIGINTs would merge into one).
  for (int i = 0; i < 5000 && slurp(log_path).find("finishing the current step") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(::kill(child, SIGINT) == 0);
  const int status = wait_exit(child);
  INFO(slurp(out.path + "/child.log"));
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGINT);
}
