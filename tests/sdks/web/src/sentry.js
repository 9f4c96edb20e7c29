// @sentry/browser ships no browser bundle in its npm package (the CDN bundles are built
// apart): tests/sdks bundles this entry with esbuild into an IIFE that sets window.Sentry.
import * as Sentry from "@sentry/browser";

window.Sentry = Sentry;
