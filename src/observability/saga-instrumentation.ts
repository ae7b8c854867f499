import {
  context,
  SpanKind,
  SpanStatusCode,
  trace,
  type Meter,
  type ObservableResult,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { Queryable } from '../db/db.ts';
import { countSagasByState, type SagaRunner, type SagaStepEvent } from '../saga/index.ts';
import type { ListenerHandle } from '../service/index.ts';
import { keelAttributes, metricNames, spanNames } from './names.ts';
import { secondsBuckets } from './traced-handler.ts';
import { keelMeter, keelTracer } from './tracer.ts';

/** The span and metric names of `instrumentSagas`, from `names.ts` (docs/observability.md lists them). */
export const sagaTelemetryNames = {
  /** INTERNAL span per run of a step's action or compensation. */
  stepSpan: (saga: string, step: string, phase: 'action' | 'compensation'): string =>
    phase === 'compensation' ? spanNames.sagaCompensation(saga, step) : spanNames.sagaStep(saga, step),
  /** Histogram (s) of a step's time from its start in a runner to its recorded outcome. */
  stepDuration: metricNames.sagaStepDuration,
  /** Gauge of instances by `keel.saga.state`, read from the database at each collection. */
  instances: metricNames.sagaInstances,
} as const;

export const sagaAttributes = {
  saga: 'keel.saga.name',
  version: 'keel.saga.version',
  instanceId: 'keel.saga.instance_id',
  step: 'keel.saga.step',
  phase: 'keel.saga.phase',
  state: 'keel.saga.state',
} as const;

export interface InstrumentSagasOptions {
  /** Default keel's tracer from the global provider. */
  tracer?: Tracer;
  /** Default keel's meter from the global provider. */
  meter?: Meter;
  /** Where to count instances by state for the gauge; without it, no gauge. */
  db?: Queryable;
}

/**
 * Spans and metrics for a `SagaRunner`, from its events (keel/saga imports no OpenTelemetry):
 * a span per run of each step (started at `step-started`, ended at its outcome; a request step's
 * span covers the wait for its reply when the reply is taken by the same runner), a histogram of
 * step durations by outcome, and, given a `db`, a gauge of instances by state. A failed step's
 * span has status ERROR; a compensation is a span of its own. Dispose the handle to detach; open
 * spans are ended then.
 */
export function instrumentSagas(runner: SagaRunner, options: InstrumentSagasOptions = {}): ListenerHandle {
  const tracer = options.tracer ?? keelTracer();
  const meter = options.meter ?? keelMeter();
  const open = new Map<string, Span>();
  const key = (e: SagaStepEvent): string => `${e.instanceId}\u0000${e.step}\u0000${e.phase}`;
  const attributes = (e: SagaStepEvent): Record<string, string | number> => ({
    [sagaAttributes.saga]: e.saga,
    [sagaAttributes.version]: e.version,
    [sagaAttributes.step]: e.step,
    [sagaAttributes.phase]: e.phase,
  });
  const duration = meter.createHistogram(sagaTelemetryNames.stepDuration, {
    description: "A saga step's time from its start in a runner to its recorded outcome",
    unit: 's',
    advice: { explicitBucketBoundaries: [...secondsBuckets] },
  });

  const start = (e: SagaStepEvent): void => {
    open.get(key(e))?.end();
    open.set(
      key(e),
      tracer.startSpan(sagaTelemetryNames.stepSpan(e.saga, e.step, e.phase), {
        kind: SpanKind.INTERNAL,
        attributes: { ...attributes(e), [sagaAttributes.instanceId]: e.instanceId },
      }),
    );
  };
  const finish = (
    e: SagaStepEvent & { durationMs: number },
    outcome: 'completed' | 'failed',
    error?: string,
  ): void => {
    duration.record(e.durationMs / 1000, { ...attributes(e), [keelAttributes.outcome]: outcome });
    const span = open.get(key(e));
    if (span === undefined) return;
    open.delete(key(e));
    span.setAttribute(keelAttributes.attempt, e.attempt);
    span.setAttribute(keelAttributes.outcome, outcome);
    if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    span.end();
  };
  const endInstance = (instanceId: string, outcome: string): void => {
    for (const [k, span] of open) {
      if (!k.startsWith(`${instanceId}\u0000`)) continue;
      span.setAttribute(keelAttributes.outcome, outcome);
      span.end();
      open.delete(k);
    }
  };

  const handles: ListenerHandle[] = [
    // The step's span is the active one while it runs: what the step does is traced as its child.
    runner.aroundSteps((e, run) => {
      const span = open.get(key(e));
      return span === undefined ? run() : context.with(trace.setSpan(context.active(), span), run);
    }),
    runner.events.on('step-started', start),
    runner.events.on('compensation-started', start),
    runner.events.on('step-completed', (e) => finish(e, 'completed')),
    runner.events.on('compensation-completed', (e) => finish(e, 'completed')),
    runner.events.on('step-failed', (e) => finish(e, 'failed', e.error.message)),
    runner.events.on('compensation-failed', (e) => finish(e, 'failed', e.error.message)),
    // Another runner goes on with it: this runner's spans of it end here.
    runner.events.on('lease-lost', (e) => endInstance(e.instanceId, 'lease-lost')),
  ];

  const db = options.db;
  let detachGauge = (): void => undefined;
  if (db !== undefined) {
    const gauge = meter.createObservableGauge(sagaTelemetryNames.instances, {
      description: 'Saga instances by state',
    });
    const callback = async (result: ObservableResult): Promise<void> => {
      const counts = await countSagasByState(db).catch(() => undefined);
      if (counts === undefined) return;
      for (const [state, n] of Object.entries(counts)) result.observe(n, { [sagaAttributes.state]: state });
    };
    gauge.addCallback(callback);
    detachGauge = () => gauge.removeCallback(callback);
  }

  const dispose = (): void => {
    for (const handle of handles.splice(0)) handle.dispose();
    detachGauge();
    for (const span of open.values()) span.end();
    open.clear();
  };
  return { dispose, [Symbol.dispose]: dispose };
}
