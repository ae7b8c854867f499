import fc from 'fast-check';
import { propertyRuns } from '../../src/testing/property-runs.ts';

// The properties that keep fast-check's default of 100 runs scale with KEEL_PROPERTY_SCALE too;
// those that name their runs call propertyRuns themselves.
if (process.env.KEEL_PROPERTY_SCALE !== undefined)
  fc.configureGlobal({ ...fc.readConfigureGlobal(), numRuns: propertyRuns(100) });
