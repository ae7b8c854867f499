import { context, SpanStatusCode } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate } from '../db/index.ts';
import { defineSaga, SagaRunner, sagaMigrations, startSaga } from '../saga/index.ts';
import { createTestDb, type TestDb } from '../testing/index.ts';
import { ManualClock } from '../time/index.ts';
import { instrumentSagas, sagaTelemetryNames } from './saga-instrumentation.ts';

class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

const dbs: TestDb[] = [];
afterEach(async () => {
  for (const db of dbs.splice(0)) await db.close();
});

function points(metrics: ResourceMetrics, name: string): { attributes: object; value: unknown }[] {
  return metrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .filter((m) => m.descriptor.name === name)
    .flatMap((m) => m.dataPoints.map((p) => ({ attributes: p.attributes, value: p.value })));
}

describe('instrumentSagas', () => {
  it('a span per step and compensation, step durations by outcome, and instances by state', async () => {
    const db = await createTestDb({ schemaPrefix: 'otels' });
    dbs.push(db);
    await migrate(db, sagaMigrations);
    const exporter = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer(
      't',
    );
    const reader = new TestReader();
    const meter = new MeterProvider({ readers: [reader] }).getMeter('t');
    const clock = new ManualClock();
    const saga = defineSaga({
      name: 'order',
      version: 1,
      steps: [
        { name: 'reserve', action: async () => 1, compensation: async () => undefined },
        {
          name: 'charge',
          action: () => Promise.reject(new Error('card declined')),
          retry: { maxAttempts: 1 },
        },
      ],
    });
    const runner = new SagaRunner({ db, sagas: [saga], clock });
    using _instrumentation = instrumentSagas(runner, { tracer, meter, db });
    await startSaga(db, saga, {}, { clock });
    await runner.runDue();

    const spans = exporter.getFinishedSpans();
    expect(spans.map((s) => s.name)).toEqual([
      sagaTelemetryNames.stepSpan('order', 'reserve', 'action'),
      'saga order charge',
      'saga order reserve compensation',
    ]);
    expect(spans[0]!.attributes).toMatchObject({
      'keel.saga.name': 'order',
      'keel.saga.step': 'reserve',
      'keel.saga.phase': 'action',
      'keel.attempt': 1,
      'keel.outcome': 'completed',
    });
    expect(spans[1]!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'card declined' });

    const { resourceMetrics } = await reader.collect();
    const durations = points(resourceMetrics, 'keel.saga.step.duration').map((p) => p.attributes);
    expect(durations).toContainEqual(
      expect.objectContaining({ 'keel.saga.step': 'charge', 'keel.outcome': 'failed' }),
    );
    const states = points(resourceMetrics, 'keel.saga.instances');
    expect(states).toContainEqual({ attributes: { 'keel.saga.state': 'COMPENSATED' }, value: 1 });
    expect(states).toContainEqual({ attributes: { 'keel.saga.state': 'RUNNING' }, value: 0 });
  });

  it("makes each step's span the active one while the step runs: its work is the span's child", async () => {
    const db = await createTestDb({ schemaPrefix: 'otels' });
    dbs.push(db);
    await migrate(db, sagaMigrations);
    // Active spans need a context manager, as the SDK's setup registers one.
    const contextManager = new AsyncLocalStorageContextManager().enable();
    context.setGlobalContextManager(contextManager);
    try {
      const exporter = new InMemorySpanExporter();
      const tracer = new BasicTracerProvider({
        spanProcessors: [new SimpleSpanProcessor(exporter)],
      }).getTracer('t');
      const work = (name: string) => async (): Promise<number> => {
        await Promise.resolve();
        tracer.startSpan(name).end();
        return 1;
      };
      const saga = defineSaga({
        name: 'order',
        version: 1,
        steps: [
          { name: 'reserve', action: work('reserving'), compensation: work('releasing') },
          { name: 'charge', action: () => Promise.reject(new Error('declined')), retry: { maxAttempts: 1 } },
        ],
      });
      const clock = new ManualClock();
      const runner = new SagaRunner({ db, sagas: [saga], clock });
      const instrumentation = instrumentSagas(runner, { tracer, db });
      await startSaga(db, saga, {}, { clock });
      await runner.runDue();

      const spans = exporter.getFinishedSpans();
      const named = (name: string) => spans.find((s) => s.name === name)!;
      expect(named('reserving').parentSpanContext?.spanId).toBe(
        named('saga order reserve').spanContext().spanId,
      );
      expect(named('releasing').parentSpanContext?.spanId).toBe(
        named('saga order reserve compensation').spanContext().spanId,
      );

      // Detached: the next instance's work is no step's child.
      instrumentation.dispose();
      exporter.reset();
      await startSaga(db, saga, {}, { clock });
      await runner.runDue();
      expect(exporter.getFinishedSpans().map((s) => s.parentSpanContext?.spanId)).toEqual([
        undefined,
        undefined,
      ]);
    } finally {
      context.disable();
      contextManager.disable();
    }
  });
});
