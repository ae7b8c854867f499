import { describe, expect, it } from 'vitest';
import { describeError, describeErrorOnOneLine } from './describe-error.ts';

describe('describeError', () => {
  it('states an error by name and message, and anything else as a string', () => {
    expect(describeError(new TypeError('bad'))).toBe('TypeError: bad');
    expect(describeError('plain')).toBe('plain');
    expect(describeError(42)).toBe('42');
  });

  it('keeps line breaks', () => {
    expect(describeError(new Error('a\nb'))).toBe('Error: a\nb');
  });

  it('cuts a long error to 2 000 characters and marks the cut', () => {
    expect(describeError('x'.repeat(2000))).toBe('x'.repeat(2000));
    expect(describeError('x'.repeat(5000))).toBe('x'.repeat(2000) + '…');
  });
});

describe('describeErrorOnOneLine', () => {
  it('turns each run of line breaks into one space', () => {
    expect(describeErrorOnOneLine(new Error('a\nb\r\n\r\nc'))).toBe('Error: a b c');
  });

  it('joins the lines before it cuts, so a text that fits once joined is whole', () => {
    const text = 'x\r\n'.repeat(1000);
    expect(describeErrorOnOneLine(text)).toBe('x '.repeat(1000));
    expect(describeErrorOnOneLine('x'.repeat(5000))).toHaveLength(2001);
  });
});
