//! Multishot subscriptions: route a multishot operation's CQEs to a handler, end it once, resubscribe.
