exports.greeting = 'hello from src/lib';
