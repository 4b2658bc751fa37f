// Lint rules the compiler does not already enforce: typescript-eslint's recommended set, with
// type information, so floating promises and unsafe any are caught where they start.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['gen/**', 'dist/**', 'client/dist/**', 'node_modules/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // node:test's test() returns a promise the runner awaits itself.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', name: ['test', 'describe', 'it', 'suite'], package: 'node:test' }] },
      ],
      // Interface methods are async by contract even where one implementation needs no await.
      '@typescript-eslint/require-await': 'off',
      // A variable a closure reads before its one assignment (a server's handler and its instance).
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Tests read JSON and logs as they come and stand in for interfaces with plain objects.
    files: ['tests/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-enum-comparison': 'off',
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/restrict-template-expressions': 'off',
      '@typescript-eslint/no-base-to-string': 'off',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      'require-yield': 'off',
    },
  },
  {
    // Foreign JavaScript (src/storage/compressionThread.cjs, run by worker_threads from a string):
    // CommonJS in Node, outside the TypeScript project, so the recommended rules without types.
    files: ['**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { Buffer: 'readonly' } },
    // require() is how CommonJS imports (the thread's string is no module).
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
