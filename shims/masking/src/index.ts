/**
 * Masking shared by the shims: PII/secret detectors, JSON and text masking driven by the
 * PDP's mask obligations, and incremental masking of SSE streams.
 */
export { DETECTORS, DETECTOR_NAMES, findMatches, luhnValid, ibanValid, isDetectorName, type DetectorName, type Detector, type Match } from './detectors.js';
export { compileMask, maskText, maskValue, parseTarget, MASK_METHODS, MaskRuleError, type CompiledMask, type MaskMethod, type MaskRuleInput } from './mask-rules.js';
export { maskJson, MAX_JSON_DEPTH } from './json-mask.js';
export { maskChatCompletion, maskChatRequest, maskToolArguments } from './chat-completion-mask.js';
export { StreamingTextMasker, DEFAULT_HOLD_CHARS, DEFAULT_MAX_HOLD_CHARS, type StreamingTextMaskerOptions } from './streaming-text-masker.js';
export { SseMasker, SseMaskError, createSseMaskTransform, type SseMaskerOptions } from './sse-masker.js';
