/*
 * The liburing twin of uring-core/examples/callgrind_nop.rs, for
 * `cargo xtask callgrind`: the same NOP workloads through liburing, so the
 * instruction counts compare like with like.
 *
 *   liburing_nop <round|submit> <batch> <rounds>
 *
 * round:  per batch, get and prep `batch` NOP SQEs, one
 *         io_uring_submit_and_wait, then reap every CQE (for_each + advance).
 * submit: NOPs flagged IOSQE_CQE_SKIP_SUCCESS, one io_uring_submit per batch.
 *
 * Ring: 256 entries, CQ 512, IORING_SETUP_SINGLE_ISSUER |
 * IORING_SETUP_DEFER_TASKRUN (Debian bookworm's liburing 2.3 predates
 * IORING_SETUP_NO_SQARRAY, so it keeps the SQ index array).
 */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: liburing_nop <round|submit> <batch> <rounds>\n");
		return 2;
	}
	int submit_only = strcmp(argv[1], "submit") == 0;
	unsigned batch = (unsigned)atoi(argv[2]);
	unsigned rounds = (unsigned)atoi(argv[3]);

	struct io_uring ring;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
	p.cq_entries = 512;
	int ret = io_uring_queue_init_params(256, &ring, &p);
	if (ret < 0) {
		fprintf(stderr, "io_uring_queue_init_params: %s\n", strerror(-ret));
		return 1;
	}
	unsigned long long sum = 0;
	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (!sqe)
				return 1;
			io_uring_prep_nop(sqe);
			sqe->user_data = r ^ i;
			if (submit_only)
				sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		}
		if (submit_only) {
			sum += (unsigned)io_uring_submit(&ring);
			continue;
		}
		if (io_uring_submit_and_wait(&ring, batch) < 0)
			return 1;
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		io_uring_for_each_cqe(&ring, head, cqe) {
			sum += cqe->user_data;
			n++;
		}
		io_uring_cq_advance(&ring, n);
	}
	printf("%llu\n", sum);
	io_uring_queue_exit(&ring);
	return 0;
}
