// esbuild bundles the style sheets the dashboard imports into the page's one CSS file.
declare module '*.css'
