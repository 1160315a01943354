//! Asynchronous waits: `epoll_wait`, futex wait, wake and waitv, `waitid`.
