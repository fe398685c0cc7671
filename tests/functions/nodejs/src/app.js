'use strict';
const { greeting } = require('./lib');

exports.handler = async (event) => ({ where: 'src/app', greeting, dir: __dirname });
