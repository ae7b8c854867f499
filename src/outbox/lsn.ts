import { InvalidArgumentError } from '../errors/index.ts';

/** A WAL position (`16/B374D848`) as a number, to compare: PostgreSQL prints it as two hex halves. */
export function parseLsn(text: string): bigint {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (match === null) throw new InvalidArgumentError('lsn', 'a WAL position like 16/B374D848', text);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(position: bigint): string {
  return `${(position >> 32n).toString(16).toUpperCase()}/${(position & 0xffffffffn).toString(16).toUpperCase()}`;
}
