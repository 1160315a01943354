/*
 * liburing's side of `cargo xtask compare` (xtask/src/compare.rs): the
 * workloads of uring-buffers/examples/compare.rs, written the way a C
 * program would use liburing, so callgrind's instruction counts compare
 * like with like.
 *
 *   liburing <mode> <batch> <rounds>
 *
 * nop-submit  per round: `batch` NOPs (io_uring_get_sqe + prep, flagged
 *             IOSQE_CQE_SKIP_SUCCESS: no CQE), one io_uring_submit.
 * nop-round   per round: `batch` NOPs, io_uring_submit_and_wait(batch),
 *             reap every CQE (io_uring_for_each_cqe + io_uring_cq_advance).
 * read-fixed  per round: `batch` 4 KiB READ_FIXED from registered file 0
 *             into registered buffer i, io_uring_submit_and_wait(batch),
 *             reap every CQE.
 * recv-multi  one multishot recv on a socketpair with a provided-buffer
 *             ring (group 1); per round: write one 64-byte message to the
 *             peer, io_uring_submit_and_wait(1), peek the CQE, return the
 *             buffer to the ring (io_uring_buf_ring_add + advance), mark
 *             the CQE seen. `batch` is ignored.
 *
 * echo        TCP echo over loopback, `batch` connections (accepted with
 *             accept(2) at set-up), each server socket with a multishot
 *             recv selecting from a provided-buffer ring (group 1); per
 *             round: each client writes 64 bytes; the ring is driven
 *             (io_uring_submit_and_wait(1), reap) until every request's
 *             recv has been answered by a send from the received buffer and
 *             every send has completed, returning the buffer to the ring;
 *             each client reads its echo.
 *
 * Every ring: 256 SQ entries, 512 CQ entries, IORING_SETUP_SINGLE_ISSUER |
 * IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_NO_SQARRAY.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * Every function is always inlined into main's dispatch, with constant
 * arguments folded, so the code each workload runs depends on its own source
 * only, not on gcc's inlining heuristics over the whole file.
 */
#define INLINE static inline __attribute__((always_inline))

#define READ_SIZE 4096
#define FILE_BLOCKS 256
#define MSG 64
#define BUFS 16
#define BUF_SIZE 256

static void die(const char *what, int err)
{
	fprintf(stderr, "liburing: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

INLINE void setup(struct io_uring *ring)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_NO_SQARRAY |
		  IORING_SETUP_CQSIZE;
	p.cq_entries = 512;
	int ret = io_uring_queue_init_params(256, ring, &p);
	if (ret < 0)
		die("io_uring_queue_init_params", ret);
}

INLINE struct io_uring_sqe *sqe_or_die(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe)
		die("io_uring_get_sqe", EBUSY);
	return sqe;
}

INLINE unsigned long long reap(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	unsigned long long sum = 0;
	io_uring_for_each_cqe(ring, head, cqe) {
		sum += cqe->user_data + (unsigned)cqe->res;
		n++;
	}
	io_uring_cq_advance(ring, n);
	return sum;
}

INLINE unsigned long long nop(unsigned batch, unsigned rounds, int submit_only)
{
	struct io_uring ring;
	setup(&ring);
	unsigned long long sum = 0;
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = sqe_or_die(&ring);
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, r ^ i);
			if (submit_only)
				io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
		}
		if (submit_only) {
			sum += (unsigned)io_uring_submit(&ring);
			continue;
		}
		int ret = io_uring_submit_and_wait(&ring, batch);
		if (ret < 0)
			die("io_uring_submit_and_wait", ret);
		sum += reap(&ring);
	}
	io_uring_queue_exit(&ring);
	return sum;
}

INLINE unsigned long long read_fixed(const char *path, unsigned batch, unsigned rounds)
{
	struct io_uring ring;
	setup(&ring);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die(path, errno);
	int ret = io_uring_register_files(&ring, &fd, 1);
	if (ret < 0)
		die("io_uring_register_files", ret);
	struct iovec *iov = calloc(batch, sizeof(*iov));
	char *mem = aligned_alloc(4096, (size_t)batch * READ_SIZE);
	if (!iov || !mem)
		die("alloc", ENOMEM);
	for (unsigned i = 0; i < batch; i++) {
		iov[i].iov_base = mem + (size_t)i * READ_SIZE;
		iov[i].iov_len = READ_SIZE;
	}
	ret = io_uring_register_buffers(&ring, iov, batch);
	if (ret < 0)
		die("io_uring_register_buffers", ret);
	unsigned long long sum = 0;
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = sqe_or_die(&ring);
			unsigned block = (r * batch + i) % FILE_BLOCKS;
			io_uring_prep_read_fixed(sqe, 0, iov[i].iov_base, READ_SIZE, (__u64)block * READ_SIZE, i);
			io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
			io_uring_sqe_set_data64(sqe, i);
		}
		ret = io_uring_submit_and_wait(&ring, batch);
		if (ret < 0)
			die("io_uring_submit_and_wait", ret);
		sum += reap(&ring);
	}
	io_uring_queue_exit(&ring);
	close(fd);
	return sum;
}

INLINE unsigned long long recv_multi(unsigned rounds)
{
	struct io_uring ring;
	setup(&ring);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		die("socketpair", errno);
	int ret;
	struct io_uring_buf_ring *br = io_uring_setup_buf_ring(&ring, BUFS, 1, 0, &ret);
	if (!br)
		die("io_uring_setup_buf_ring", ret);
	char *bufs = malloc(BUFS * BUF_SIZE);
	if (!bufs)
		die("alloc", ENOMEM);
	int mask = io_uring_buf_ring_mask(BUFS);
	for (int i = 0; i < BUFS; i++)
		io_uring_buf_ring_add(br, bufs + i * BUF_SIZE, BUF_SIZE, i, mask, i);
	io_uring_buf_ring_advance(br, BUFS);
	char msg[MSG];
	memset(msg, 'x', sizeof(msg));
	unsigned long long sum = 0;
	int armed = 0;
	for (unsigned r = 0; r < rounds; r++) {
		if (!armed) {
			struct io_uring_sqe *sqe = sqe_or_die(&ring);
			io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
			io_uring_sqe_set_flags(sqe, IOSQE_BUFFER_SELECT);
			sqe->buf_group = 1;
			io_uring_sqe_set_data64(sqe, 7);
			armed = 1;
		}
		if (write(sv[1], msg, sizeof(msg)) != sizeof(msg))
			die("write", errno);
		ret = io_uring_submit_and_wait(&ring, 1);
		if (ret < 0)
			die("io_uring_submit_and_wait", ret);
		struct io_uring_cqe *cqe;
		ret = io_uring_peek_cqe(&ring, &cqe);
		if (ret < 0)
			die("io_uring_peek_cqe", ret);
		if (cqe->res != MSG || !(cqe->flags & IORING_CQE_F_BUFFER))
			die("recv", cqe->res < 0 ? cqe->res : EIO);
		unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		char *data = bufs + bid * BUF_SIZE;
		sum += (unsigned char)data[0] + (unsigned)cqe->res;
		io_uring_buf_ring_add(br, data, BUF_SIZE, bid, mask, 0);
		io_uring_buf_ring_advance(br, 1);
		if (!(cqe->flags & IORING_CQE_F_MORE))
			armed = 0;
		io_uring_cqe_seen(&ring, cqe);
	}
	io_uring_queue_exit(&ring);
	close(sv[0]);
	close(sv[1]);
	return sum;
}

#define ECHO_BUFS 64
#define SEND_TAG (1ULL << 32)

INLINE unsigned long long echo(unsigned conns, unsigned rounds)
{
	struct io_uring ring;
	setup(&ring);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in addr;
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t alen = sizeof(addr);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0)
		die("listen", errno);
	int *client = calloc(conns, sizeof(int)), *server = calloc(conns, sizeof(int));
	if (!client || !server)
		die("alloc", ENOMEM);
	for (unsigned i = 0; i < conns; i++) {
		int one = 1;
		client[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (client[i] < 0 || connect(client[i], (struct sockaddr *)&addr, sizeof(addr)) < 0)
			die("connect", errno);
		server[i] = accept(lfd, NULL, NULL);
		if (server[i] < 0)
			die("accept", errno);
		setsockopt(client[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(server[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	int ret;
	struct io_uring_buf_ring *br = io_uring_setup_buf_ring(&ring, ECHO_BUFS, 1, 0, &ret);
	char *bufs = malloc(ECHO_BUFS * BUF_SIZE);
	if (!br || !bufs)
		die("io_uring_setup_buf_ring", br ? ENOMEM : ret);
	int mask = io_uring_buf_ring_mask(ECHO_BUFS);
	for (int i = 0; i < ECHO_BUFS; i++)
		io_uring_buf_ring_add(br, bufs + i * BUF_SIZE, BUF_SIZE, i, mask, i);
	io_uring_buf_ring_advance(br, ECHO_BUFS);
	for (unsigned i = 0; i < conns; i++) {
		struct io_uring_sqe *sqe = sqe_or_die(&ring);
		io_uring_prep_recv_multishot(sqe, server[i], NULL, 0, 0);
		io_uring_sqe_set_flags(sqe, IOSQE_BUFFER_SELECT);
		sqe->buf_group = 1;
		io_uring_sqe_set_data64(sqe, i);
	}
	char msg[MSG], back[MSG];
	memset(msg, 'e', sizeof(msg));
	unsigned long long sum = 0;
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < conns; i++)
			if (write(client[i], msg, sizeof(msg)) != sizeof(msg))
				die("write", errno);
		unsigned pending = 2 * conns;
		while (pending) {
			ret = io_uring_submit_and_wait(&ring, 1);
			if (ret < 0)
				die("io_uring_submit_and_wait", ret);
			struct io_uring_cqe *cqe;
			unsigned head, n = 0;
			io_uring_for_each_cqe(&ring, head, cqe) {
				n++;
				if (cqe->user_data & SEND_TAG) {
					unsigned bid = (unsigned)(cqe->user_data >> 16) & 0xffff;
					if (cqe->res != MSG)
						die("send", cqe->res < 0 ? cqe->res : EIO);
					io_uring_buf_ring_add(br, bufs + bid * BUF_SIZE, BUF_SIZE, bid, mask, 0);
					io_uring_buf_ring_advance(br, 1);
					pending--;
					continue;
				}
				unsigned conn = (unsigned)cqe->user_data;
				if (cqe->res != MSG || !(cqe->flags & IORING_CQE_F_BUFFER) ||
				    !(cqe->flags & IORING_CQE_F_MORE))
					die("recv", cqe->res < 0 ? cqe->res : EIO);
				unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
				struct io_uring_sqe *sqe = sqe_or_die(&ring);
				io_uring_prep_send(sqe, server[conn], bufs + bid * BUF_SIZE, (size_t)cqe->res, 0);
				io_uring_sqe_set_data64(sqe, SEND_TAG | ((unsigned long long)bid << 16) | conn);
				pending--;
			}
			io_uring_cq_advance(&ring, n);
		}
		for (unsigned i = 0; i < conns; i++) {
			if (read(client[i], back, sizeof(back)) != sizeof(back))
				die("read", errno);
			sum += (unsigned char)back[0];
		}
	}
	io_uring_queue_exit(&ring);
	for (unsigned i = 0; i < conns; i++) {
		close(client[i]);
		close(server[i]);
	}
	close(lfd);
	return sum;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: liburing <nop-submit|nop-round|read-fixed|recv-multi|echo> <batch> <rounds> [file]\n");
		return 2;
	}
	const char *mode = argv[1];
	unsigned batch = (unsigned)atoi(argv[2]);
	unsigned rounds = (unsigned)atoi(argv[3]);
	unsigned long long sum;
	if (!strcmp(mode, "nop-submit"))
		sum = nop(batch, rounds, 1);
	else if (!strcmp(mode, "nop-round"))
		sum = nop(batch, rounds, 0);
	else if (!strcmp(mode, "read-fixed") && argc == 5)
		sum = read_fixed(argv[4], batch, rounds);
	else if (!strcmp(mode, "echo"))
		sum = echo(batch, rounds);
	else if (!strcmp(mode, "recv-multi"))
		sum = recv_multi(rounds);
	else {
		fprintf(stderr, "liburing: unknown mode %s\n", mode);
		return 2;
	}
	printf("%llu\n", sum);
	return 0;
}
