// OpenTelemetry JS ships ES modules only: tests/sdks bundles this entry with esbuild into
// an IIFE. It wires what a browser app does to send web vitals and errors as OTLP/JSON logs:
// the logs SDK with a batch processor and the OTLP/HTTP exporter, and the web-vitals and
// errors instrumentations of @opentelemetry/browser-instrumentation. The logs SDK does not
// flush when the page is hidden, so the app flushes it then (the batch would be lost).
import { BatchLogRecordProcessor, LoggerProvider } from "@opentelemetry/sdk-logs";
import { OTLPLogExporter } from "@opentelemetry/exporter-logs-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { WebVitalsInstrumentation } from "@opentelemetry/browser-instrumentation/experimental/web-vitals";
import { ErrorsInstrumentation } from "@opentelemetry/browser-instrumentation/experimental/errors";

window.rumgateOtel = {
  start({ url, app, release }) {
    const provider = new LoggerProvider({
      resource: resourceFromAttributes({ "service.name": app, "service.version": release }),
      processors: [new BatchLogRecordProcessor({ exporter: new OTLPLogExporter({ url }) })],
    });
    for (const instrumentation of [new WebVitalsInstrumentation(), new ErrorsInstrumentation()]) {
      instrumentation.setLoggerProvider(provider);
    }
    addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") provider.forceFlush();
    });
    return provider;
  },
};
