import { MeterProvider, MetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import type { ServiceHealth } from '../service/index.ts';
import { instrumentServiceHealth } from './instrument-service-health.ts';

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

async function gauge(reader: TestReader): Promise<MetricData | undefined> {
  const { resourceMetrics } = await reader.collect();
  return resourceMetrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === 'keel.service.health');
}

describe('instrumentServiceHealth', () => {
  it('observes each part at every collection: 0 ok, 1 failing, 2 not running', async () => {
    const reader = new TestReader();
    const provider = new MeterProvider({ readers: [reader] });
    let parts: Record<string, ServiceHealth> = {
      relay: { status: 'ok', lastContactAt: 1 },
      worker: { status: 'not-running', state: 'starting' },
    };
    let reads = 0;
    const handle = instrumentServiceHealth(() => {
      reads += 1;
      return parts;
    }, provider.getMeter('test'));
    const points = async () =>
      Object.fromEntries(
        ((await gauge(reader))?.dataPoints ?? []).map((p) => [String(p.attributes['keel.service']), p.value]),
      );
    expect(await points()).toEqual({ relay: 0, worker: 2 });
    parts = {
      relay: {
        status: 'failing',
        dependency: 'broker',
        during: 'publish',
        since: 1,
        failures: 2,
        lastError: new Error('down'),
        lastContactAt: 1,
      },
      worker: { status: 'ok', lastContactAt: 2 },
    };
    expect(await points()).toEqual({ relay: 1, worker: 0 });
    expect(reads).toBe(2);
    handle.dispose();
    await points();
    expect(reads).toBe(2);
    await provider.shutdown();
  });
});
