// CancellationSource / CancellationToken.
#include <duplex/cancellation.hpp>

namespace duplex {

bool CancellationToken::is_cancellation_requested() const noexcept {
  if (!state_) return false;
  std::lock_guard lock(state_->mutex);
  return state_->cancelled;
}

std::uint64_t CancellationToken::register_callback(std::function<void()> callback) const {
  if (!state_) return 0;
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->cancelled) {
      auto id = state_->next_id++;
      state_->callbacks.emplace_back(id, std::move(callback));
      return id;
    }
  }
  callback();
  return 0;
}

void CancellationToken::unregister(std::uint64_t id) const noexcept {
  if (!state_ || id == 0) return;
  std::lock_guard lock(state_->mutex);
  auto& cbs = state_->callbacks;
  for (auto it = cbs.begin(); it != cbs.end(); ++it) {
    if (it->first == id) {
      cbs.erase(it);
      return;
    }
  }
}

void CancellationSource::cancel() {
  std::vector<std::pair<std::uint64_t, std::function<void()>>> run;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->cancelled) return;
    state_->cancelled = true;
    run.swap(state_->callbacks);
  }
  for (auto& [id, cb] : run) cb();
}

bool CancellationSource::is_cancellation_requested() const noexcept {
  std::lock_guard lock(state_->mutex);
  return state_->cancelled;
}

}  // namespace duplex
