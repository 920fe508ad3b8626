//! The billing service suite on DynamoDB (the emulator), with 500 events delivered three times.
//! moto deep-copies its tables on every TransactWriteItems, the table grows with the run and so does every copy: 2,000 events took 7 minutes there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod suite;

billing_suite!(smartsite_shared::testkit::dynamo, 500);
