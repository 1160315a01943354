//! The zero-copy send tracker: the result CQE, then the notification CQE that frees the buffer, with `IORING_SEND_ZC_REPORT_USAGE`.
