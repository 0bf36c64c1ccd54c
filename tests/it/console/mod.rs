//! The console in a real browser: headless Chromium driven through chromedriver
//! (`fantoccini`), against the real daemon on the simulator, with a loopback webhook
//! receiver. Skipped, with a note, where chromedriver is not installed.
//!
//! `NAVIXY_ALERTS_SCREENSHOTS=1` writes the pages the tests see to `docs/img/`.

mod browser;
mod pages;
mod rules;
