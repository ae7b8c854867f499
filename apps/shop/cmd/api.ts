// The HTTP API alone: writes orders and their events; a relay and a worker run elsewhere.
import { runShop } from './run-shop.ts';

await runShop(['api'], { banner: true });
